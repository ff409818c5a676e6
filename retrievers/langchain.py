"""Use any LangChain retriever or vector store as a citerag Retriever.

Users with Elasticsearch, Qdrant, pgvector, Chroma, FAISS... stores behind LangChain plug them
in as they are: ``RAGPipeline(retriever=LangChainRetriever(store), ...)``. The other
direction (a citerag index as a LangChain retriever) is :mod:`app.langchain_runnable`.
"""

from __future__ import annotations

import hashlib
import logging
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.types import Passage

log = logging.getLogger(__name__)

_ID_KEYS = ("doc_id", "id", "source")


class LangChainRetriever:
    """Wrap a LangChain ``BaseRetriever`` or ``VectorStore``; its documents become Passages.

    A retriever is called with ``.batch(queries)``; it decides how many documents it returns
    and ``k`` truncates. A vector store (anything with ``similarity_search`` and no
    ``batch``) is asked for ``k`` documents per query, kept in its order, with its relevance
    scores (higher is better) when they agree with that order; ``search_kwargs`` (e.g. ``{"filter": ...}``) are
    passed to every search.

    Metadata keys used when present: ``doc_id``/``id``/``source`` (first found), ``title``,
    ``start`` (else LangChain's own ``start_index``, which text splitters write with
    ``add_start_index=True``), ``end``, ``score``. Otherwise the doc_id is
    ``"lc-" + sha1(text)[:12]``, ``start=0``, ``end=len(text)`` and the score falls with rank
    (``1/rank``). A chunk of a ``source`` with no offset at all is named
    ``source#sha1(text)[:12]`` with the span of its own text: its place in the source is
    unknown, and two same-length chunks of one source must never share a citation key.
    """

    def __init__(self, lc_retriever: Any, *, search_kwargs: Mapping[str, Any] | None = None) -> None:
        self.lc_retriever = lc_retriever
        self.search_kwargs = dict(search_kwargs or {})
        self.is_vector_store = is_vector_store(lc_retriever)

    def retrieve(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        if not queries:
            return []
        if self.is_vector_store:
            return [self._search(q, k) for q in queries]
        batches = self.lc_retriever.batch(list(queries))
        return [[to_passage(d, rank) for rank, d in enumerate(docs[: max(k, 0)], start=1)] for docs in batches]

    def _search(self, query: str, k: int) -> list[Passage]:
        """The store's top ``k`` in its own order. Scores: its relevance scores, else its raw
        scores, else ``1/rank`` -- the first that falls with rank. (Raw scores are distances
        for some stores, and some relevance functions invert the order, e.g. FAISS with
        MAX_INNER_PRODUCT in langchain-community; neither may contradict the ranking.)"""
        if k < 1:
            return []
        store = self.lc_retriever
        hits: list[tuple[Any, Any]] | None = None
        try:
            hits = store.similarity_search_with_relevance_scores(query, k=k, **self.search_kwargs)
        except NotImplementedError:
            pass
        if hits is None or not _falling(hits):
            try:
                raw = store.similarity_search_with_score(query, k=k, **self.search_kwargs)
            except NotImplementedError:
                raw = [(d, None) for d in store.similarity_search(query, k=k, **self.search_kwargs)]
            hits = raw if _falling(raw) else [(d, 1.0 / rank) for rank, (d, _) in enumerate(raw, start=1)]
        # The store's score, never a score kept in the metadata (stale for this query).
        return [to_passage(d, rank, float(score)) for rank, (d, score) in enumerate(hits[:k], start=1)]


def _falling(hits: Sequence[tuple[Any, Any]]) -> bool:
    scores = [s for _, s in hits]
    if any(not isinstance(s, numbers.Real) for s in scores):
        return False
    return all(a >= b for a, b in zip(scores, scores[1:]))


def is_vector_store(obj: Any) -> bool:
    """True for a LangChain ``VectorStore`` (searched directly), False for a retriever."""
    return callable(getattr(obj, "similarity_search", None)) and not callable(getattr(obj, "batch", None))


def to_passage(doc: Any, rank: int = 1, score: float | None = None) -> Passage:
    """A LangChain ``Document`` as a Passage (see :class:`LangChainRetriever`); ``score``,
    when given, wins over the metadata's."""
    text: str = doc.page_content
    meta: Mapping[str, Any] = doc.metadata or {}
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]
    doc_id = next((str(meta[key]) for key in _ID_KEYS if meta.get(key) not in (None, "")), None)
    start = _as_int(meta.get("start"), _as_int(meta.get("start_index"), -1))
    if doc_id is None:
        doc_id = "lc-" + digest
    elif start < 0 and "doc_id" not in meta and "id" not in meta:
        doc_id = f"{doc_id}#{digest}"  # a chunk of this source, place unknown
    start = max(start, 0)
    end = _as_int(meta.get("end"), start + len(text))
    if score is None:
        score = meta.get("score")
    if not isinstance(score, numbers.Real) or isinstance(score, bool):  # numpy scalars are Real
        score = 1.0 / rank
    page, page_end = _pages(meta)
    return Passage(
        doc_id=doc_id,
        text=text,
        title=str(meta.get("title") or ""),
        score=float(score),
        start=start,
        end=end,
        pid=str(meta.get("pid") or ""),
        page=page,
        page_end=page_end,
    )


def _pages(meta: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """The 1-based page (and last page) of a Document. Ours (``doc_id`` in the metadata, from
    ``Passage.to_dict``) count from 1. LangChain's PDF loaders count ``page`` from 0 and give
    the printed number as ``page_label``; a numeric label wins, else ``page`` + 1."""
    if "doc_id" in meta:
        page = _as_int(meta.get("page"), 0)
        if page < 1:
            return None, None
        end = _as_int(meta.get("page_end"), 0)
        return page, end if end > page else None
    label = str(meta.get("page_label") or "")
    if label.isdigit() and int(label) >= 1:
        return int(label), None
    page = _as_int(meta.get("page"), -1)
    return (page + 1, None) if page >= 0 else (None, None)


def _as_int(value: Any, default: int) -> int:
    try:
        return int(value) if value is not None and not isinstance(value, bool) else default
    except (TypeError, ValueError):
        return default
