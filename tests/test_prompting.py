"""Prompt building: numbering, truncation with exact spans, budget, chat template."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from pipeline.errors import ContextBudgetError, InputError
from pipeline.prompting import PromptConfig, build_prompt, format_document, truncate_passage
from pipeline.types import Passage


class WordTokenizer:
    """One token per whitespace-separated word; optional toy chat template."""

    def __init__(self, chat: bool = False) -> None:
        self.chat = chat

    def encode(self, text: str) -> list[int]:
        return [len(w) for w in text.split()]

    def decode(self, ids: Sequence[int]) -> str:
        return " ".join("x" * i for i in ids)

    def apply_chat_template(self, messages: list[dict[str, str]]) -> str | None:
        if not self.chat:
            return None
        return "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in messages) + "<assistant>"


DOC = "The Golden Gate Bridge opened to pedestrians on May 27, 1937, and to cars the next day."
P = [
    Passage("gg.md", DOC, "Golden Gate Bridge", 1.0, 100, 100 + len(DOC)),
    Passage("mc.txt", "Marie Curie won two Nobel Prizes.", "Marie Curie", 0.5, 0, 33),
]


def test_documents_are_numbered_in_rank_order() -> None:
    built = build_prompt("When did it open?", P, WordTokenizer(), max_context=1000, max_new_tokens=50)
    assert "Document [1] (Title: Golden Gate Bridge): The Golden Gate" in built.text
    assert "Document [2] (Title: Marie Curie): Marie Curie won" in built.text
    assert built.text.rstrip().endswith("Question: When did it open?\nAnswer:")
    assert built.shown == tuple(P) and built.numbers == (1, 2)


def test_chat_template_is_used_when_present() -> None:
    built = build_prompt("Q?", P, WordTokenizer(chat=True), max_context=1000, max_new_tokens=50)
    assert built.text.startswith("<system>Answer the question")
    assert "<user>Document [1]" in built.text and built.text.endswith("<assistant>")


def test_truncation_keeps_span_exact() -> None:
    cut = truncate_passage(P[0], WordTokenizer(), 5)
    assert cut.text == "The Golden Gate Bridge opened"
    assert (cut.start, cut.end) == (100, 100 + len(cut.text))
    assert DOC[cut.start - 100 : cut.end - 100] == cut.text


def test_lowest_ranked_documents_dropped_to_fit() -> None:
    full = build_prompt("Q?", P, WordTokenizer(), max_context=1000, max_new_tokens=10)
    budget = full.n_tokens - 3 + 10  # room for less than both documents
    built = build_prompt("Q?", P, WordTokenizer(), max_context=budget, max_new_tokens=10)
    assert built.shown == (P[0],) and built.n_tokens <= budget - 10


def test_question_that_cannot_fit_is_a_clear_error() -> None:
    with pytest.raises(ContextBudgetError, match="max-model-len"):
        build_prompt("word " * 200, P, WordTokenizer(), max_context=100, max_new_tokens=10)


@pytest.mark.parametrize("q", ["", "   \n"])
def test_empty_question_rejected(q: str) -> None:
    with pytest.raises(InputError, match="empty"):
        build_prompt(q, P, WordTokenizer(), max_context=100, max_new_tokens=10)


def test_custom_numbers_for_iterative_mode() -> None:
    built = build_prompt("Q?", P, WordTokenizer(), max_context=1000, max_new_tokens=10, numbers=[4, 6])
    assert "Document [4]" in built.text and "Document [6]" in built.text and built.numbers == (4, 6)


def test_document_without_title() -> None:
    assert format_document(3, Passage("x", "a\n b")) == "Document [3]: a b"


def test_instruction_marks_documents_as_data() -> None:
    assert "not instructions" in PromptConfig().instruction
