"""Hybrid retrieval by reciprocal rank fusion (RRF) of several retrievers' rankings."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pipeline.errors import ConfigError
from pipeline.protocols import Retriever
from pipeline.types import Passage

log = logging.getLogger(__name__)


def rrf_fuse(rankings: list[list[Passage]], k: int, rrf_k: int = 60) -> list[Passage]:
    """Fuse rankings by RRF: score = sum over rankings of ``1 / (rrf_k + rank)``, rank from 1.

    Passages are identified by :attr:`Passage.key`; the first occurrence supplies the
    fields. Ties keep first-seen order. Returns the top ``k``, scored with the fused score.
    """
    fused: dict[tuple[str, int, int], float] = {}
    first: dict[tuple[str, int, int], Passage] = {}
    for ranking in rankings:
        seen_here: set[tuple[str, int, int]] = set()
        for rank, p in enumerate(ranking, start=1):
            key = p.key
            if key in seen_here:  # a duplicate inside one ranking counts once, at its best rank
                continue
            seen_here.add(key)
            first.setdefault(key, p)
            fused[key] = fused.get(key, 0.0) + 1.0 / (rrf_k + rank)
    order = sorted(first, key=lambda key: -fused[key])  # stable: ties keep first-seen order
    return [first[key].with_score(fused[key]) for key in order[: max(k, 0)]]


class HybridRetriever:
    """Retrieve ``depth`` passages from each retriever (``k`` when None) and fuse with RRF."""

    def __init__(self, retrievers: Sequence[Retriever], rrf_k: int = 60, depth: int | None = None) -> None:
        if not retrievers:
            raise ConfigError("HybridRetriever needs at least one retriever")
        if rrf_k < 0:
            raise ConfigError(f"rrf_k must be 0 or more, got {rrf_k}")
        if depth is not None and depth <= 0:
            raise ConfigError(f"depth must be positive (or None for k), got {depth}")
        self.retrievers = list(retrievers)
        self.rrf_k = rrf_k
        self.depth = depth

    def retrieve(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        if not queries:
            return []
        depth = max(self.depth or k, k)
        per_retriever = [r.retrieve(queries, depth) for r in self.retrievers]
        return [rrf_fuse([results[q] for results in per_retriever], k, self.rrf_k) for q in range(len(queries))]
