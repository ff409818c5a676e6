"""Central value types. Frozen dataclasses; pydantic is used only at the edges."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

#: Between two pages in a paged document's text (a PDF's): a form feed, the usual page-break
#: character. One stands between every two pages, a page with no text included, so the page
#: of any character is 1 + the form feeds before it, and a passage cut shorter
#: (:meth:`Passage.prefix`) can tell its last page from its own text.
PAGE_BREAK = "\f"


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
    #: The 1-based page of a paged source (PDF) where the passage starts; None for others.
    page: int | None = None
    #: The page where it ends, only when that is a later page than ``page``.
    page_end: int | None = None

    @classmethod
    def from_record(cls, record: Mapping[str, Any], score: float = 0.0) -> Passage:
        """The passage a stored record holds (a ``passages.jsonl`` line, a Qdrant payload).

        One reader for every store, so a record one store accepts the others accept too:
        doc_id, text, title and pid must be strings, page and page_end integers or absent,
        start and end present. Raises ValueError (KeyError for a missing span) naming the
        field; callers turn it into the error their store reports.
        """
        fields = (record.get("doc_id"), record.get("text"), record.get("title", ""), record.get("pid", ""))
        if not all(isinstance(v, str) for v in fields):
            raise ValueError("doc_id, text, title and pid must be strings")
        page, page_end = record.get("page"), record.get("page_end")
        if not all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in (page, page_end)):
            raise ValueError("page and page_end must be integers")
        return cls(
            doc_id=record["doc_id"],
            text=record["text"],
            title=record.get("title", ""),
            score=float(score),
            start=int(record["start"]),
            end=int(record["end"]),
            pid=record.get("pid", ""),
            page=page,
            page_end=page_end,
        )

    def with_score(self, score: float) -> Passage:
        return Passage(
            self.doc_id, self.text, self.title, float(score), self.start, self.end, self.pid, self.page, self.page_end
        )

    def prefix(self, length: int) -> Passage:
        """The passage's first ``length`` characters: span, ``page`` and ``page_end`` kept exact."""
        text = self.text[:length]
        page_end = None
        if self.page is not None:
            last = self.page + text.count(PAGE_BREAK)
            page_end = last if last != self.page else None
        return replace(self, text=text, end=self.start + len(text), page_end=page_end)

    def page_at(self, offset: int) -> int | None:
        """The page of document offset ``offset`` inside this passage (None without pages)."""
        if self.page is None:
            return None
        return self.page + self.text[: max(0, offset - self.start)].count(PAGE_BREAK)

    @property
    def page_label(self) -> str:
        """``"p. 2"``, ``"pp. 2-3"``, or "" for a source without pages."""
        return page_label(self.page, self.page_end)

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

        Keys, in this order: ``doc_id``, ``title``, ``text``, ``start``, ``end``, ``page`` and
        ``page_end`` (only when set: a passage of a PDF has ``page``, and ``page_end`` when it
        runs onto a later page; other passages have neither key), ``score``, and ``pid`` only
        when asked for. ``support`` replaces the retrieval score (the judge's support,
        in verifier results). ``text`` / ``span`` / ``score`` False leave out the text (where
        it travels separately, as a LangChain document's content), start and end, and the score
        (saliency reports name passages only)."""
        d: dict[str, Any] = {"doc_id": self.doc_id, "title": self.title}
        if text:
            d["text"] = self.text
        if span:
            d["start"], d["end"] = self.start, self.end
        if self.page is not None:
            d["page"] = self.page
            if self.page_end is not None:
                d["page_end"] = self.page_end
        if score:
            d["score"] = float(support) if support is not None else self.score
        if pid:
            d["pid"] = self.pid
        return d


def page_label(page: int | None, page_end: int | None = None) -> str:
    """How people write a page reference: ``"p. 2"``, ``"pp. 2-3"``; "" without a page."""
    if page is None:
        return ""
    return f"pp. {page}-{page_end}" if page_end is not None and page_end != page else f"p. {page}"


@dataclass(frozen=True)
class Citation:
    """Citation number ``n`` resolved to its passage: one shown to the generator, or (``shown``
    False) one ``ask --verify`` found in the index as evidence for a sentence."""

    n: int
    passage: Passage
    shown: bool = True
    #: Support of the citing sentence by the passage, when measured (similarity or judge).
    support: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, **self.passage.to_dict(), "shown": self.shown}


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
    #: Every passage shown to the generator, numbered from 1 in the order shown; after
    #: ``ask --verify``, followed by the evidence it found in the index (see ``n_shown``).
    passages: tuple[Passage, ...]
    report: dict[str, Any] = field(default_factory=dict)
    #: How many of ``passages`` (the first ones) the generator was shown; None: all of them.
    #: A number above it names evidence the verifier added, never a passage the generator saw.
    n_shown: int | None = None

    def with_report(self, **extra: Any) -> AttributedAnswer:
        """A copy whose report has ``extra`` added."""
        return replace(self, report={**self.report, **extra})

    def shown(self, n: int) -> bool:
        """Whether passage ``n`` (1-based) was shown to the generator."""
        return n <= (self.n_shown if self.n_shown is not None else len(self.passages))

    def cited_numbers(self) -> list[int]:
        seen: list[int] = []
        for s in self.sentences:
            for n in s.citations:
                if n not in seen:
                    seen.append(n)
        return sorted(seen)

    def citation(self, n: int) -> Citation:
        return Citation(n, self.passages[n - 1], self.shown(n))

    def uncited_numbers(self) -> list[int]:
        """The shown passages no sentence cites (as Haystack's answer builder reports them)."""
        cited = set(self.cited_numbers())
        return [n for n in range(1, len(self.passages) + 1) if self.shown(n) and n not in cited]

    def to_dict(self) -> dict[str, Any]:
        cited = self.cited_numbers()
        return {
            "question": self.question,
            "answer": self.text,
            "sentences": [s.to_dict() for s in self.sentences],
            "citations": [self.citation(n).to_dict() for n in cited],
            "cited_passages": cited,
            "uncited_passages": self.uncited_numbers(),
            "passages": [
                {"n": i, **p.to_dict(), "shown": self.shown(i), "cited": i in cited}
                for i, p in enumerate(self.passages, start=1)
            ],
            **self.report,
        }


# ---------------------------------------------------------------- verifier results

#: A passage with the judge's support of a claim (or of an edit) by it.
SupportedPassage = tuple[Passage, float]
#: What the revision loop did with a claim.
ClaimStatus = Literal["kept", "edited", "marked", "removed"]


def _supported_dicts(passages: tuple[SupportedPassage, ...]) -> list[dict[str, Any]]:
    """Passages as JSON, each ``score`` being the judge's support (not the retrieval score)."""
    return [p.to_dict(support=s) for p, s in passages]


@dataclass(frozen=True)
class Edit:
    """A change the revision made to the text: an accepted edit, or a claim removed."""

    original_text: str
    #: "" when the claim was removed.
    revised_text: str
    #: The passages the edit was judged against (a removed claim: its selected evidence).
    evidence: tuple[SupportedPassage, ...]
    support: float
    preservation: float
    reason: str
    #: The editor that wrote it; None for a removal (no editor was involved).
    editor: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "original_text": self.original_text,
            "revised_text": self.revised_text,
            "evidence": _supported_dicts(self.evidence),
            "support": self.support,
            "preservation": self.preservation,
            "reason": self.reason,
        }
        if self.editor is not None:
            d["editor"] = self.editor
        return d


@dataclass(frozen=True)
class EditAttempt:
    """The edit of one claim as the loop judged it: the chosen candidate (else the best rejected
    one), why it was accepted or not, and every candidate the editors proposed."""

    original_text: str
    revised_text: str
    #: The passages the edit was judged against, with the judge's support of the edit by each.
    evidence: tuple[SupportedPassage, ...]
    #: The best of those supports.
    support: float
    preservation: float
    accepted: bool
    reason: str
    editor: str
    #: The spans an aligned edit replaced, and every candidate with its verdict, as the editors
    #: report them (their types live in ``verifiers``, above this module).
    diffs: tuple[dict[str, Any], ...] = ()
    candidates: tuple[dict[str, Any], ...] = ()

    def applied(self) -> Edit:
        """The edit as the revision records it once accepted."""
        return Edit(
            self.original_text,
            self.revised_text,
            self.evidence,
            self.support,
            self.preservation,
            self.reason,
            self.editor,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "original_text": self.original_text,
            "revised_text": self.revised_text,
            "evidence": _supported_dicts(self.evidence),
            "support": self.support,
            "preservation": self.preservation,
            "accepted": self.accepted,
            "reason": self.reason,
            "editor": self.editor,
            "diffs": [dict(d) for d in self.diffs],
            "candidates": [dict(c) for c in self.candidates],
        }


@dataclass(frozen=True)
class ClaimResult:
    """One claim of a revised text: its final wording, what happened to it, its citations."""

    #: The final sentence ("" when removed).
    text: str
    original_text: str
    #: Offsets of the claim in the original text.
    start: int
    end: int
    status: ClaimStatus
    supported: bool
    #: Support of ``text`` by its citations when supported, else the best support seen.
    support: float
    citations: tuple[SupportedPassage, ...] = ()
    #: The editor of an edited claim.
    editor: str | None = None
    #: An evidence sentence gives another value (number, date, name) for the same slot.
    contradicted: bool = False

    @property
    def revised(self) -> bool:
        """Its words were edited, or it was removed."""
        return self.status in ("edited", "removed")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "text": self.text,
            "original_text": self.original_text,
            "start": self.start,
            "end": self.end,
            "status": self.status,
            "supported": self.supported,
            "support": self.support,
            "revised": self.revised,
        }
        if self.editor is not None:
            d["editor"] = self.editor
        if self.contradicted:
            d["contradicted"] = True
        d["citations"] = _supported_dicts(self.citations)
        return d


@dataclass(frozen=True)
class Revision:
    original: str
    revised: str
    edits: tuple[Edit, ...] = ()
    evidence: tuple[Passage, ...] = ()
    preservation: float = 1.0


@dataclass(frozen=True)
class RevisionResult:
    """A revised text (``citerag revise``): the revision, each claim's result, and the report."""

    revision: Revision
    claims: tuple[ClaimResult, ...]
    #: Everything the loop found (JSON-ready): research per claim, edit attempts, timings.
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def original(self) -> str:
        return self.revision.original

    @property
    def revised(self) -> str:
        return self.revision.revised

    def to_dict(self) -> dict[str, Any]:
        return {
            "original": self.revision.original,
            "revised": self.revision.revised,
            "edits": [e.to_dict() for e in self.revision.edits],
            "claims": [c.to_dict() for c in self.claims],
            "preservation": self.revision.preservation,
            "report": self.report,
        }


@dataclass(frozen=True)
class SentenceVerdict:
    """``ask --verify``'s first decision on one sentence, from the judge's scores of every
    shown passage: ``supported`` by a cited passage, ``recited`` to the supportive passages
    ``numbers``, or sent to the revision loop (``rarr``)."""

    status: Literal["supported", "recited", "rarr"]
    #: The support the sentence ends with (best cited one; for ``recited``, the best new one).
    support: float
    #: The best support by the passages it cited as written.
    before: float
    #: ``recited``: the passage numbers it now cites, best first.
    numbers: tuple[int, ...] = ()


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
