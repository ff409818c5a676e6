"""Corpus rows of candidate passages, for retrievers that rank a few candidates
(``retrieve_from``, speculative retrieval in pipeline/iterative.py) as they rank their corpus."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.types import Passage


class RowLookup:
    """The row of each passage of a corpus by its span key (the map is built on first use)."""

    def __init__(self, passages: Sequence[Passage]) -> None:
        self._passages = passages
        self._rows: dict[tuple[str, int, int], int] | None = None

    def rows(self, candidates: Sequence[Passage]) -> np.ndarray:
        """The sorted distinct rows of ``candidates`` (ones not in the corpus are left out), so
        that ties broken by position are broken by corpus order."""
        if self._rows is None:
            self._rows = {p.key: i for i, p in enumerate(self._passages)}
        found = [self._rows[p.key] for p in candidates if p.key in self._rows]
        return np.unique(np.array(found, dtype=np.int64))
