"""Request and response bodies of the HTTP API (pydantic: this is an edge).

Responses are the CLI's JSON (``citerag ask --json``, ``citerag revise --json``): the
models below document it in ``/openapi.json``; the server sends ``to_dict()`` itself, so the
two can never drift apart (``tests/test_serve.py`` parses real answers with these models).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

RetrieverName = Literal["hybrid", "dense", "bm25"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Open(BaseModel):
    """Output objects: documented fields, and any extra report keys passed through."""

    model_config = ConfigDict(extra="allow")


# -- requests ------------------------------------------------------------------------------


class AskRequest(_Strict):
    """``POST /v1/ask``: what ``citerag ask`` takes as options."""

    question: str = Field(description="The question (its length is limited by the server's --max-question-chars).")
    k: int | None = Field(None, ge=1, le=100, description="Passages shown to the generator (default: the server's -k).")
    retriever: RetrieverName | None = Field(None, description="Retriever (default: the server's --retriever).")
    verify: bool = Field(
        False,
        description="Judge each sentence against its citations; re-cite or revise (RARR) what they do not support.",
    )
    stream: bool = Field(
        False,
        description="Answer as server-sent events: `token` events, a `sentence` event as each sentence "
        "completes (with its citations), then one `final` event with the answer.",
    )
    max_tokens: int | None = Field(
        None,
        ge=1,
        description="Answer length limit in tokens (default: the server's --max-tokens; capped by --max-tokens-limit).",
    )
    post_hoc: bool | None = Field(
        None,
        description="Attach citations to uncited sentences after generation "
        "(default: on unless the server runs with --no-post-hoc).",
    )
    abstain: bool | None = Field(
        None,
        description='Answer "The documents do not answer this question." when no shown passage supports the draft '
        "or none is about the question (default: on unless the server runs with --no-abstain).",
    )
    quotes: bool = Field(
        True,
        description="Give each supportive citation the smallest passage span the judge finds supportive (`quotes`).",
    )


class ReviseRequest(_Strict):
    """``POST /v1/revise``: what ``citerag revise`` takes as options."""

    text: str = Field(description="The text to check and revise (its length is limited by --max-text-chars).")
    policy: Literal["mark", "remove"] = Field("mark", description="What to do with a claim no accepted edit fixes.")
    min_preservation: float = Field(
        0.5, ge=0.0, le=1.0, description="An edit must keep at least this share of the claim (1 - Lev/len)."
    )
    evidence: int = Field(3, ge=1, le=10, description="Evidence passages kept per claim.")
    select_by: Literal["judge", "retrieval"] = Field(
        "judge", description="Rank the pooled evidence by the judge or by retrieval score."
    )
    samples: int = Field(
        3, ge=0, le=8, description="Question-generation samples per claim (0: the claim alone is the query)."
    )
    llm_gate: bool = Field(False, description="Also ask the generator whether the evidence agrees (both must agree).")
    threshold: float | None = Field(
        None, ge=0.0, le=1.0, description="Support threshold (default: the judge's calibrated one)."
    )
    retriever: RetrieverName | None = Field(None, description="Retriever (default: the server's --retriever).")
    k: int = Field(3, ge=1, le=20, description="Passages retrieved per query.")


# -- the answer (citerag ask --json) -------------------------------------------------------

_PAGE = "PDF passages only (absent otherwise): the 1-based page of the file where the passage starts."
_PAGE_END = "Present only when the passage runs onto a later page: the page where it ends."


class PassageOut(_Open):
    n: int = Field(description="The number the generator saw the passage under ([n]).")
    doc_id: str
    title: str = ""
    text: str = Field(description="The passage: exactly document[start:end].")
    start: int = Field(description="Character offset of the passage in its source document.")
    end: int
    page: int | None = Field(None, description=_PAGE)
    page_end: int | None = Field(None, description=_PAGE_END)
    score: float = Field(description="Retrieval score.")
    shown: bool = Field(
        True,
        description="True when the generator was shown this passage; false for evidence `verify` found in the "
        "index afterwards (numbered after the shown passages).",
    )
    cited: bool | None = Field(None, description="In `passages`: True when a sentence of the answer cites it.")


class QuoteOut(_Open):
    n: int = Field(description="The citation number (see `passages`).")
    start: int = Field(description="Character offset of the quote in the source document (inside the passage's span).")
    end: int
    text: str = Field(description="The quote: exactly document[start:end].")
    support: float = Field(description="The judge's support of the sentence by the quote (0..1).")


class SentenceOut(_Open):
    text: str
    start: int = Field(description="Offset of the sentence in the answer text.")
    end: int
    citations: list[int] = Field(description="Numbers of the passages (see `passages`) the sentence cites.")
    post_hoc: bool = Field(
        description="True when the generator wrote no valid marker and the citation was attached afterwards."
    )
    dropped_citations: list[int] | None = Field(
        None, description="Numbers the generator wrote that match no shown passage."
    )
    support: float | None = Field(
        None, description="With verify: support of the sentence by its final citations (0..1)."
    )
    revised: bool | None = Field(None, description="With verify: True when the sentence's words were edited.")
    quotes: list[QuoteOut] | None = Field(
        None, description="For each citation the judge finds supportive: the smallest supporting span of the passage."
    )


class AskResponse(_Open):
    """The answer: ``citerag ask --json``."""

    question: str
    answer: str
    sentences: list[SentenceOut]
    citations: list[PassageOut] = Field(description="Every cited passage, by number.")
    passages: list[PassageOut] = Field(
        description="Every passage shown to the generator, numbered from 1; with verify, then the evidence it "
        'found in the index ("shown": false).'
    )
    cited_passages: list[int] = Field(default_factory=list, description="Numbers of the passages some sentence cites.")
    uncited_passages: list[int] = Field(
        default_factory=list, description="Numbers of the shown passages no sentence cites."
    )
    dropped_citations: list[int] = Field(default_factory=list)
    post_hoc_citations: int = 0
    timings: dict[str, float] = Field(default_factory=dict, description="Seconds per stage.")
    verification: dict[str, Any] | None = Field(
        None, description="With verify: per-sentence status, support before/after, threshold."
    )
    abstained: bool | None = Field(
        None,
        description='True when the answer was replaced by "The documents do not answer this question."; '
        "the draft is in `draft`.",
    )
    draft: dict[str, Any] | None = Field(None, description="When abstained: the generated answer and its sentences.")
    abstention: dict[str, Any] | None = Field(
        None, description="The abstention rule's inputs: question-passage relevance, best support, thresholds, reasons."
    )


# -- the revision (citerag revise --json) --------------------------------------------------


class EvidenceOut(_Open):
    doc_id: str
    title: str = ""
    text: str
    start: int
    end: int
    page: int | None = Field(None, description=_PAGE)
    page_end: int | None = Field(None, description=_PAGE_END)
    score: float = Field(description="The judge's support of the claim by this passage (or the retrieval score).")


class EditOut(_Open):
    original_text: str
    revised_text: str = Field(description="The edited sentence; empty when the claim was removed.")
    evidence: list[EvidenceOut]
    support: float
    preservation: float
    reason: str


class ClaimOut(_Open):
    text: str
    original_text: str
    start: int = Field(description="Offset of the claim in the original text.")
    end: int
    status: Literal["kept", "edited", "marked", "removed"]
    supported: bool
    support: float
    revised: bool
    citations: list[EvidenceOut]


class ReviseResponse(_Open):
    """The revision: ``citerag revise --json``."""

    original: str
    revised: str
    edits: list[EditOut]
    claims: list[ClaimOut]
    preservation: float = Field(description="Character-level preservation of the original (1 - Lev/len).")
    report: dict[str, Any] = Field(
        description="The attribution report: per-claim questions, evidence, gate decision, edit attempts."
    )


# -- the rest --------------------------------------------------------------------------------


class ErrorBody(BaseModel):
    type: str = Field(description="The error class, e.g. GeneratorUnavailableError.")
    message: str = Field(description="What went wrong and what to do.")
    status: int


class ErrorResponse(BaseModel):
    error: ErrorBody


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"


class ReadyResponse(BaseModel):
    ready: bool
    index: dict[str, Any] = Field(description="Index path and passage count, once loaded.")
    generator: dict[str, Any] = Field(description="Backend, model and whether it answers.")
    message: str = ""


class InfoResponse(BaseModel):
    version: str
    endpoints: list[str] = Field(
        description="The POST/GET routes under /v1 this server has (optional ones only when present)."
    )
    retrievers: list[str]
    defaults: dict[str, Any]
    limits: dict[str, Any]
    auth: bool


class DocumentSpan(BaseModel):
    """A window of a source document around a cited span, rebuilt from the index's passages."""

    doc_id: str
    title: str
    text: str = Field(description="document[offset:offset + len(text)]; characters no passage covers are spaces.")
    offset: int
    start: int = Field(description="The cited span, in document offsets.")
    end: int
    page: int | None = Field(None, description="PDF documents only: the 1-based page the span starts on.")
    page_end: int | None = Field(None, description="PDF documents only: the page it ends on, when later.")


#: The error statuses every API operation may answer, documented in /openapi.json (and held to
#: it by tests/test_api_fuzz.py): 400 a body that cannot be parsed, 401 a missing or wrong key
#: (servers with --api-key), 413 a body or field over its limit, 422 a request that parses but
#: is invalid, 503 not ready or the generator unreachable, 504 past --request-timeout.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 413, 422, 503, 504)
}

#: One server-sent event of ``POST /v1/ask`` with ``"stream": true``: ``token`` events carry
#: ``{"text": ...}``, ``sentence`` events each completed sentence with its citations (see the
#: route's description), then one ``final`` (the whole answer, as the JSON response) or
#: ``error`` (``{"type", "message", "status"}``); ``data`` is that JSON, as text.
SSE_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "event": {"type": "string", "enum": ["token", "sentence", "final", "error"]},
        "data": {
            "type": "string",
            "description": "The event's JSON payload. sentence: {index, text, start, end, post_hoc, "
            "citations: [{n, doc_id, title, shown, quote, start, end}], and support / revised once "
            "verified}; a later sentence event with the same index replaces it, {index, removed: true} "
            "drops it; the last one per index equals final.sentences[index].",
        },
    },
    "required": ["data"],
}
