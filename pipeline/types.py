"""Central value types. Frozen dataclasses; pydantic is used only at the edges."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class Passage:
    """A span of a source document: ``text == document[start:end]``."""

    doc_id: str
    text: str
    title: str = ""
    score: float = 0.0
    start: int = 0
    end: int = 0
    #: Stable id of the passage inside an index ("<doc_id>#<ordinal>"), or "" when unindexed.
    pid: str = ""

    def with_score(self, score: float) -> Passage:
        return Passage(self.doc_id, self.text, self.title, float(score), self.start, self.end, self.pid)

    @property
    def key(self) -> tuple[str, int, int]:
        """Identity of the span, independent of score."""
        return (self.doc_id, self.start, self.end)

    def to_dict(
        self,
        *,
        support: float | None = None,
        text: bool = True,
        span: bool = True,
        score: bool = True,
        pid: bool = False,
    ) -> dict[str, Any]:
        """The passage as JSON: the one way every output (CLI, HTTP API, reports) writes one.

        Keys, in this order: ``doc_id``, ``title``, ``text``, ``start``, ``end``, ``score``, and
        ``pid`` only when asked for. ``support`` replaces the retrieval score (the judge's support,
        in verifier results). ``text`` / ``span`` / ``score`` False leave out the text (where
        it travels separately, as a LangChain document's content), start and end, and the score
        (saliency reports name passages only)."""
        d: dict[str, Any] = {"doc_id": self.doc_id, "title": self.title}
        if text:
            d["text"] = self.text
        if span:
            d["start"], d["end"] = self.start, self.end
        if score:
            d["score"] = float(support) if support is not None else self.score
        if pid:
            d["pid"] = self.pid
        return d


@dataclass(frozen=True)
class Citation:
    """Citation number ``n`` (as shown to the generator) resolved to the passage shown."""

    n: int
    passage: Passage
    #: Support of the citing sentence by the passage, when measured (similarity or judge).
    support: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, **self.passage.to_dict()}


@dataclass(frozen=True)
class Quote:
    """The part of cited passage ``n`` that supports a sentence: ``start``/``end`` are character
    offsets in the source document (inside the passage's span), ``text`` is that slice."""

    n: int
    start: int
    end: int
    text: str
    #: The judge's support of the sentence by ``text``.
    support: float

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "start": self.start, "end": self.end, "text": self.text, "support": self.support}


@dataclass(frozen=True)
class Sentence:
    """A sentence of the answer; ``start``/``end`` are offsets into the answer text."""

    text: str
    start: int
    end: int
    citations: tuple[int, ...] = ()
    #: True when no valid marker was written and the citation was attached after generation.
    post_hoc: bool = False
    #: Numbers the generator wrote that point at no passage it was shown (dropped).
    dropped: tuple[int, ...] = ()
    support: float | None = None
    #: Set by verification (``ask --verify``): True when the sentence's text was edited.
    revised: bool | None = None
    #: The supporting quote of each citation the judge found supportive (grounding).
    quotes: tuple[Quote, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "text": self.text,
            "start": self.start,
            "end": self.end,
            "citations": list(self.citations),
            "post_hoc": self.post_hoc,
        }
        if self.dropped:
            d["dropped_citations"] = list(self.dropped)
        if self.support is not None:
            d["support"] = self.support
        if self.revised is not None:
            d["revised"] = self.revised
        if self.quotes:
            d["quotes"] = [q.to_dict() for q in self.quotes]
        return d


@dataclass(frozen=True)
class AttributedAnswer:
    question: str
    text: str
    sentences: tuple[Sentence, ...]
    #: Every passage shown to the generator, numbered from 1 in the order shown.
    passages: tuple[Passage, ...]
    report: dict[str, Any] = field(default_factory=dict)

    def cited_numbers(self) -> list[int]:
        seen: list[int] = []
        for s in self.sentences:
            for n in s.citations:
                if n not in seen:
                    seen.append(n)
        return sorted(seen)

    def citation(self, n: int) -> Citation:
        return Citation(n, self.passages[n - 1])

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.text,
            "sentences": [s.to_dict() for s in self.sentences],
            "citations": [self.citation(n).to_dict() for n in self.cited_numbers()],
            "passages": [{"n": i + 1, **p.to_dict()} for i, p in enumerate(self.passages)],
            **self.report,
        }


@dataclass(frozen=True)
class Revision:
    original: str
    revised: str
    edits: tuple[dict[str, Any], ...] = ()
    evidence: tuple[Passage, ...] = ()
    preservation: float = 1.0


@dataclass(frozen=True)
class GenerationParams:
    """Decoding parameters. Deterministic by default (greedy, fixed seed)."""

    max_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    n: int = 1
    stop: tuple[str, ...] = ()
    seed: int = 0
    #: Structured output: the generated text must match this regular expression (vLLM
    #: backends only; see :mod:`pipeline.constrained`). None: unconstrained.
    regex: str | None = None


@dataclass(frozen=True)
class Generation:
    text: str
    #: Token ids of the generated text when the backend reports them.
    token_ids: tuple[int, ...] = ()
    finish_reason: Literal["stop", "length", "abort", ""] | str = ""
