"""Use any LangChain retriever (``langchain_core`` ``BaseRetriever``) as a citerag Retriever."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.types import Passage

log = logging.getLogger(__name__)

_ID_KEYS = ("doc_id", "id", "source")


class LangChainRetriever:
    """Wrap ``lc_retriever``; its ``.batch(queries)`` results become Passages.

    Metadata keys used when present: ``doc_id``/``id``/``source`` (first found), ``title``,
    ``start``, ``end``, ``score``. Otherwise the doc_id is ``"lc-" + sha1(text)[:12]``,
    ``start=0``, ``end=len(text)`` and the score falls with rank (``1/rank``). The wrapped
    retriever decides how many documents it returns; ``k`` truncates.
    """

    def __init__(self, lc_retriever: Any) -> None:
        self.lc_retriever = lc_retriever

    def retrieve(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        if not queries:
            return []
        batches = self.lc_retriever.batch(list(queries))
        return [[to_passage(d, rank) for rank, d in enumerate(docs[: max(k, 0)], start=1)] for docs in batches]


def to_passage(doc: Any, rank: int = 1) -> Passage:
    """A LangChain ``Document`` as a Passage (see :class:`LangChainRetriever`)."""
    text: str = doc.page_content
    meta: Mapping[str, Any] = doc.metadata or {}
    doc_id = next((str(meta[key]) for key in _ID_KEYS if meta.get(key) not in (None, "")), None)
    if doc_id is None:
        doc_id = "lc-" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]
    start = _as_int(meta.get("start"), 0)
    end = _as_int(meta.get("end"), start + len(text))
    score = meta.get("score")
    if not isinstance(score, (int, float)) or isinstance(score, bool):
        score = 1.0 / rank
    return Passage(
        doc_id=doc_id,
        text=text,
        title=str(meta.get("title") or ""),
        score=float(score),
        start=start,
        end=end,
        pid=str(meta.get("pid") or ""),
    )


def _as_int(value: Any, default: int) -> int:
    try:
        return int(value) if value is not None and not isinstance(value, bool) else default
    except (TypeError, ValueError):
        return default
