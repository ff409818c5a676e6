"""From a chat conversation to what the answer pipeline takes: the question and a retrieval query.

The rule (``POST /v1/chat/completions``, documented in the README):

* the **question** is the text of the last ``user`` message: it is what the generator answers
  and what the answer object records;
* the **retrieval query** is that question followed by the earlier ``user`` turns, most recent
  first, at most :data:`CONTEXT_TURNS` of them, one per line. A follow-up such as "When did it
  open?" then still finds the passages about the bridge the conversation is about. The question
  comes first because dense retrievers truncate long queries from the end;
* ``assistant`` turns are not in the query (they are citerag's own earlier answers, whose words
  and markers would pull retrieval back to the passages already shown), and neither are
  ``system``, ``developer`` or ``tool`` messages (the pipeline has its own prompt).

:class:`RetrievalQuery` puts the retrieval query in place of the question for one request's
retriever, so the pipeline itself is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.errors import InputError
from pipeline.types import Passage

#: Earlier user turns added to the retrieval query.
CONTEXT_TURNS = 2


@dataclass(frozen=True)
class Turn:
    """One message of a conversation, its content as plain text."""

    role: str
    text: str


@dataclass(frozen=True)
class ChatQuery:
    question: str
    #: The text the retriever searches with (the question alone for a one-turn chat).
    retrieval_query: str


class ChatInputError(InputError):
    """A conversation the chat endpoint cannot answer; ``param`` names the offending field."""

    http_status = 400

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def chat_query(turns: Sequence[Turn], context_turns: int = CONTEXT_TURNS) -> ChatQuery:
    """The question and retrieval query of a conversation (see the module docstring)."""
    users = [(i, t.text.strip()) for i, t in enumerate(turns) if t.role == "user"]
    if not users:
        raise ChatInputError(
            "messages has no user message: the last user message is the question citerag answers", "messages"
        )
    last, question = users[-1]
    if not question:
        raise ChatInputError(
            f"messages[{last}] (the last user message, the question) is empty: write the question there",
            f"messages[{last}].content",
        )
    earlier = [text for _, text in reversed(users[:-1]) if text][:context_turns]
    return ChatQuery(question, "\n".join([question, *earlier]))


class RetrievalQuery:
    """A ``Retriever`` that searches ``query`` wherever it is asked for ``question``; other
    queries (an iterative re-retrieval's) and everything else pass through to ``inner``."""

    def __init__(self, inner: Any, question: str, query: str) -> None:
        self.inner, self.question, self.query = inner, question.strip(), query

    def retrieve(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        swapped = [self.query if q.strip() == self.question else q for q in queries]
        return self.inner.retrieve(swapped, k)

    def __getattr__(self, name: str) -> Any:
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)
