"""Token streaming through the unchanged answer pipeline.

``ask_streaming(pipe, question, on_token)`` runs ``pipe.ask`` with its generator wrapped in
a :class:`TokenTap`: a single-prompt generation goes through the backend's ``stream`` method
(OpenAI-compatible servers with ``"stream": true``, vLLM's async engine) and every piece of
new text is passed to ``on_token`` as it arrives. Retrieval, prompting, citation parsing and
the answer object are exactly those of ``pipe.ask``. A backend without ``stream`` yields its
whole text as one piece.

With a :class:`SentenceStream`, each sentence of the answer is also reported once it is
complete (the next sentence has started, or the generation has ended), as the dict that the
server sends as a ``sentence`` event: the sentence as the final answer has it (the same
cleaning, splitter and citation parser, run on the text so far) and its citations resolved to
the passages the generator was shown. Later stages (verification, grounding, abstention) can
change sentences; :meth:`SentenceStream.settle` then re-sends each sentence that changed (same
``index``) and removes those the final answer no longer has, so the last event per index is
the final answer's sentence.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pipeline.citations import MARKER_RE, PostHocCiter, cite_answer, sentence_spans
from pipeline.constrained import SENTENCE_END
from pipeline.types import AttributedAnswer, Generation, GenerationParams, Passage, Sentence

if TYPE_CHECKING:
    from pipeline.prompting import BuiltPrompt
    from pipeline.protocols import Generator, Tokenizer
    from pipeline.rag import RAGPipeline

#: The end of a constrained sentence (its citation group, and full stop), once the space
#: before the next sentence has come.
_SENTENCE_END = re.compile(SENTENCE_END + r"(?= \S)")

#: Receives each new piece of answer text.
TokenSink = Callable[[str], None]
#: Receives ``(prompt, text generated for it so far)`` after each streamed piece.
TextSink = Callable[[str, str], None]
#: Receives each ``sentence`` event's payload.
SentenceSink = Callable[[dict[str, Any]], None]


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

    def __init__(
        self,
        inner: Generator,
        on_token: TokenSink,
        cancelled: Callable[[], bool] | None = None,
        on_text: TextSink | None = None,
    ) -> None:
        self.inner = inner
        self.on_token = on_token
        self.cancelled = cancelled
        #: Called after each piece (and after its tokens were reported) with the prompt and
        #: all of its text so far, held-back text included (:class:`SentenceStream` reads it).
        self.on_text = on_text
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
                    if self.on_text is not None:
                        self.on_text(prompts[0], "".join(texts))
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
    pipe: RAGPipeline,
    question: str,
    on_token: TokenSink,
    cancelled: Callable[[], bool] | None = None,
    sentences: SentenceStream | None = None,
) -> AttributedAnswer:
    """``pipe.ask(question)``, calling ``on_token`` with each new piece of the answer text and,
    with ``sentences``, reporting each sentence as it completes (and every one by the end)."""
    tap = TokenTap(pipe.generator, on_token, cancelled, sentences.feed if sentences is not None else None)
    run = replace(pipe, generator=tap)
    if sentences is not None:
        run = sentences.bind(run, question)
    answer = run.ask(question)
    if tap.held:
        # Constrained: the sentences still held back (or rebuilt by the tail decode) go now, so
        # the reported text is the answer, unless cleaning changed what was already sent.
        sent = tap.sent.lstrip()
        if answer.text.startswith(sent) and len(answer.text) > len(sent):
            tap._report(answer.text[len(sent) :])
    if sentences is not None:
        sentences.settle(answer)
    return answer


def sentence_event(
    index: int, sentence: Sentence, passages: Sequence[Passage], n_shown: int | None = None
) -> dict[str, Any]:
    """The payload of a ``sentence`` event: ``index`` in the answer's sentences, the sentence as
    the final answer writes it (``Sentence.to_dict``), and its citations resolved to passages:
    ``n``, ``doc_id``, ``title``, ``shown``, and ``quote`` with its ``start``/``end`` in the source
    document: the judge's supporting quote where grounding found one, else the whole passage."""
    quotes = {q.n: q for q in sentence.quotes}
    shown = len(passages) if n_shown is None else n_shown
    cites = []
    for n in sentence.citations:
        p = passages[n - 1]
        q = quotes.get(n)
        cite = {"n": n, **p.to_dict(text=False, score=False), "shown": n <= shown}
        if q is not None:
            cite.update(quote=q.text, start=q.start, end=q.end)
        else:
            cite["quote"] = p.text
        cites.append(cite)
    return {"index": index, **sentence.to_dict(), "citations": cites}


def _started(text: str) -> bool:
    """Whether ``text``, the start of the next sentence, is more than citation markers (whole,
    or an unclosed ``[...`` that may become one): only then is the sentence before it complete,
    since trailing markers still belong to it."""
    rest = re.sub(r"\[[^\]]*$", "", MARKER_RE.sub("", text))
    return any(ch.isalnum() for ch in rest)


@dataclass
class _MemoCiter:
    """A post-hoc citer that remembers its picks, so a sentence cited while streaming gets the
    same citation (and score) in the final answer, computed once."""

    inner: PostHocCiter
    picks: dict[tuple[str, str, tuple[tuple[str, int, int], ...]], tuple[int | None, float]] = field(
        default_factory=dict
    )

    def best(
        self, sentences: Sequence[str], passages: Sequence[Passage], question: str = ""
    ) -> list[tuple[int | None, float]]:
        keys = tuple(p.key for p in passages)
        todo = list(dict.fromkeys(s for s in sentences if (question, s, keys) not in self.picks))
        if todo:
            for s, pick in zip(todo, self.inner.best(todo, passages, question)):
                self.picks[(question, s, keys)] = pick
        return [self.picks[(question, s, keys)] for s in sentences]


class SentenceStream:
    """Reports the sentences of one streamed answer through ``on_sentence`` (see the module doc).

    Used as ``ask_streaming(..., sentences=SentenceStream(sink))``, then ``settle(answer)`` with
    the answer after any later stage. While generating, a sentence is reported once the text
    after it starts a new sentence; it is split, cited and cleaned by the pipeline's own
    functions on the text so far, and its citations are numbers of shown passages only
    (``cite_answer`` drops the rest). Sentences of the iterative loop, whose shown passages grow
    while it generates, are reported when it ends.
    """

    def __init__(self, on_sentence: SentenceSink) -> None:
        self.on_sentence = on_sentence
        #: The last payload sent for each index (None: removed).
        self.sent: dict[int, dict[str, Any] | None] = {}
        self._pipe: RAGPipeline | None = None
        self._question = ""
        self._prompt: BuiltPrompt | None = None

    def bind(self, pipe: RAGPipeline, question: str) -> RAGPipeline:
        """``pipe`` reporting its prompt here, with its post-hoc citer remembered."""
        post_hoc = _MemoCiter(pipe.post_hoc) if pipe.post_hoc is not None else None
        self._pipe = replace(pipe, on_prompt=self._start, post_hoc=post_hoc)
        self._question = question
        return self._pipe

    def _start(self, prompt: BuiltPrompt) -> None:
        self._prompt = prompt

    def feed(self, prompt: str, text: str) -> None:
        """``text`` was generated so far for ``prompt``: report the sentences it completes.

        A second decode that continues the answer (the constrained tail: the prompt plus the
        answer's first words) counts as more of the same answer."""
        start, pipe = self._prompt, self._pipe
        if start is None or pipe is None or not prompt.startswith(start.text):
            return
        cleaned = pipe.clean_text(prompt[len(start.text) :] + text, start.shown).text
        spans = sentence_spans(cleaned)
        done = len(spans) - 1  # the last one may go on
        if done > 0 and not _started(cleaned[spans[-1][0] : spans[-1][1]]):
            done -= 1
        first = len(self.sent)
        if done <= first:
            return
        parsed = cite_answer(cleaned[: spans[done - 1][1]], start.shown, pipe.post_hoc, self._question)
        if [(s.start, s.end) for s in parsed.sentences] != spans[:done]:
            return  # the cut changed the split: wait for more text
        for i in range(first, done):
            self._send(i, sentence_event(i, parsed.sentences[i], start.shown))

    def settle(self, answer: AttributedAnswer) -> None:
        """Send each sentence of ``answer`` not yet sent as it is now, and remove the sentences
        sent before that ``answer`` no longer has."""
        for i, s in enumerate(answer.sentences):
            event = sentence_event(i, s, answer.passages, answer.n_shown)
            if self.sent.get(i) != event:
                self._send(i, event)
        for i in sorted(self.sent):
            if i >= len(answer.sentences) and self.sent[i] is not None:
                self._send(i, None)

    def _send(self, index: int, event: dict[str, Any] | None) -> None:
        self.sent[index] = event
        self.on_sentence(event if event is not None else {"index": index, "removed": True})
