"""Token streaming through the unchanged answer pipeline.

``ask_streaming(pipe, question, on_token)`` runs ``pipe.ask`` with its generator wrapped in
a :class:`TokenTap`: a single-prompt generation goes through the backend's ``stream`` method
(OpenAI-compatible servers with ``"stream": true``, vLLM's async engine) and every piece of
new text is passed to ``on_token`` as it arrives. Retrieval, prompting, citation parsing and
the answer object are exactly those of ``pipe.ask``. A backend without ``stream`` yields its
whole text as one piece.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pipeline.constrained import SENTENCE_END
from pipeline.types import AttributedAnswer, Generation, GenerationParams

if TYPE_CHECKING:
    from pipeline.protocols import Generator, Tokenizer
    from pipeline.rag import RAGPipeline

#: The end of a constrained sentence (its citation group, and full stop), once the space
#: before the next sentence has come.
_SENTENCE_END = re.compile(SENTENCE_END + r"(?= \S)")

#: Receives each new piece of answer text.
TokenSink = Callable[[str], None]


def stream_generation(generator: Generator, prompt: str, params: GenerationParams) -> Iterator[Generation]:
    """The deltas of one generation: the backend's ``stream`` when it has one, else one chunk."""
    stream = getattr(generator, "stream", None)
    if stream is None:
        yield generator.generate([prompt], params)[0]
        return
    yield from stream(prompt, params)


class TokenTap:
    """A ``Generator`` that forwards to ``inner`` and reports single-prompt text as it streams.

    Batched calls (several prompts) and ``score`` go to ``inner`` unchanged. ``cancelled``
    (when given) is polled between pieces; once it returns True the stream is closed, which
    aborts the backend request, and the text so far is returned with ``finish_reason="abort"``.

    Constrained decoding (``params.regex``) may end in text the answer drops (an unfinished
    sentence cut by the token limit, closed by a separate tail decode), so those pieces are
    held back and only whole sentences (through their citation group, ``... [2]`` or
    ``... [2].``, once the next one starts) are reported; ``sent`` keeps what was reported, and
    :func:`ask_streaming` sends the rest of the final answer at the end.
    """

    def __init__(self, inner: Generator, on_token: TokenSink, cancelled: Callable[[], bool] | None = None) -> None:
        self.inner = inner
        self.on_token = on_token
        self.cancelled = cancelled
        #: Everything reported through ``on_token``.
        self.sent = ""
        #: True once a constrained generation was held back sentence by sentence.
        self.held = False

    def _report(self, text: str) -> None:
        self.sent += text
        self.on_token(text)

    @property
    def max_context(self) -> int:
        return self.inner.max_context

    @property
    def tokenizer(self) -> Tokenizer:
        return self.inner.tokenizer

    def generate(self, prompts: Sequence[str], params: GenerationParams) -> list[Generation]:
        if isinstance(prompts, str) or len(prompts) != 1:
            return self.inner.generate(prompts, params)
        texts: list[str] = []
        ids: list[int] = []
        reason = ""
        reported = 0  # characters of this generation reported (constrained decoding)
        chunks = stream_generation(self.inner, prompts[0], params)
        try:
            for chunk in chunks:
                if self.cancelled is not None and self.cancelled():
                    reason = "abort"
                    break
                if chunk.text:
                    texts.append(chunk.text)
                    if params.regex is None:
                        self._report(chunk.text)
                    else:
                        self.held = True
                        # Report through the last citation group that a new sentence follows.
                        done = "".join(texts)
                        cut = max((m.end() for m in _SENTENCE_END.finditer(done)), default=0)
                        if cut > reported:
                            self._report(done[reported:cut])
                            reported = cut
                ids.extend(chunk.token_ids)
                reason = chunk.finish_reason or reason
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        return [Generation("".join(texts), tuple(ids), reason)]

    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[list[float]]:
        return self.inner.score(prompts, continuations)

    def __getattr__(self, name: str) -> Any:
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


def ask_streaming(
    pipe: RAGPipeline, question: str, on_token: TokenSink, cancelled: Callable[[], bool] | None = None
) -> AttributedAnswer:
    """``pipe.ask(question)``, calling ``on_token`` with each new piece of the answer text."""
    tap = TokenTap(pipe.generator, on_token, cancelled)
    answer = replace(pipe, generator=tap).ask(question)
    if tap.held:
        # Constrained: the sentences still held back (or rebuilt by the tail decode) go now, so
        # the reported text is the answer, unless cleaning changed what was already sent.
        sent = tap.sent.lstrip()
        if answer.text.startswith(sent) and len(answer.text) > len(sent):
            tap._report(answer.text[len(sent) :])
    return answer
