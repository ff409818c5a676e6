"""Re-rank a base retriever's candidates with a cross-encoder or any scoring callable."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from pipeline.errors import ConfigError
from pipeline.protocols import Retriever
from pipeline.types import Passage

log = logging.getLogger(__name__)

#: ``(query, passage_texts) -> one relevance score per text`` (higher is better).
Reranker = Callable[[str, list[str]], Sequence[float]]


class CrossEncoderReranker:
    """A sentence-transformers ``CrossEncoder`` as a :data:`Reranker` (loaded lazily).

    No cross-encoder weights ship on PyPI: pass a local folder (or a hub id where a hub is
    reachable). A model with several labels is scored by its last logit.
    """

    def __init__(self, name_or_path: str, batch_size: int = 32, device: str = "cpu") -> None:
        from retrievers.dense import _load_model

        self.name = name_or_path
        self.batch_size = batch_size
        self.model = _load_model("CrossEncoder", name_or_path, device)

    def __call__(self, query: str, texts: list[str]) -> list[float]:
        if not texts:
            return []
        scores = np.asarray(
            self.model.predict(
                [(query, t) for t in texts],
                batch_size=self.batch_size,
                show_progress_bar=False,
                convert_to_numpy=True,
            ),
            dtype=np.float32,
        )
        if scores.ndim == 2:
            scores = scores[:, -1]
        return [float(s) for s in scores]


class RerankingRetriever:
    """Take the top ``max(depth, k)`` of ``base``, re-score them with ``reranker``, keep ``k``."""

    def __init__(self, base: Retriever, reranker: Reranker, depth: int = 20) -> None:
        if depth <= 0:
            raise ConfigError(f"rerank depth must be positive, got {depth}")
        self.base = base
        self.reranker = reranker
        self.depth = depth

    def retrieve(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        if not queries:
            return []
        if k <= 0:
            return [[] for _ in queries]
        candidates = self.base.retrieve(queries, max(self.depth, k))
        out: list[list[Passage]] = []
        for query, cands in zip(queries, candidates):
            if not cands:
                out.append([])
                continue
            scores = [float(s) for s in self.reranker(query, [p.text for p in cands])]
            if len(scores) != len(cands):
                raise ConfigError(
                    f"the reranker returned {len(scores)} scores for {len(cands)} passages: "
                    "it must return one score per passage"
                )
            order = sorted(range(len(cands)), key=lambda i: -scores[i])  # stable on ties
            out.append([cands[i].with_score(scores[i]) for i in order[:k]])
        return out
