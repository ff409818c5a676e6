"""A support judge that remembers its scores for the length of one job.

``ask --verify`` judges every (shown passage, sentence) pair to decide what to repair, and
grounding then judges the same pairs again for support, quotes and abstention; RARR's
evidence selection judges cited passages that are among them too. Wrapping the judge in
:class:`MemoJudge` for one job scores each distinct pair once: what is not yet known goes to
the judge in one batch, in first-seen order, so a call costs what its new pairs cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipeline.protocols import Pair, SupportJudge


class MemoJudge:
    """``judge`` with a memory of the last ``capacity`` distinct pairs (oldest forgotten first)."""

    def __init__(self, judge: SupportJudge, capacity: int = 200_000) -> None:
        self.inner = judge
        self.capacity = capacity
        self._memo: dict[Pair, float] = {}
        #: pairs asked for, and pairs answered without the inner judge (repeats and remembered)
        self.asked = self.remembered = 0

    @property
    def threshold(self) -> float:
        return float(self.inner.threshold)

    def judge(self, pairs: Sequence[Pair]) -> list[float]:
        keys = [(str(e), str(c)) for e, c in pairs]
        new = list(dict.fromkeys(k for k in keys if k not in self._memo))
        scores = dict(zip(new, self.inner.judge(new))) if new else {}
        self.asked += len(keys)
        self.remembered += len(keys) - len(new)
        out = [scores[k] if k in scores else self._memo[k] for k in keys]
        self._memo.update(scores)
        while len(self._memo) > self.capacity:
            del self._memo[next(iter(self._memo))]
        return out

    def __getattr__(self, name: str) -> Any:  # card, decide, windows...: the inner judge's
        return getattr(self.inner, name)
