"""Evidence retrieval (batched over every question of every claim) and evidence selection."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pipeline.errors import ConfigError
from pipeline.protocols import Retriever, SupportJudge
from pipeline.types import Passage

SelectBy = Literal["judge", "retrieval"]
SELECT_BY: tuple[str, ...] = ("judge", "retrieval")


def evidence_text(p: Passage) -> str:
    """What the judge and the editor read: the passage, prefixed by its title when it has one."""
    if p.title and not p.text.startswith(p.title):
        return f"{p.title}: {p.text}"
    return p.text


def merge_passages(groups: Sequence[Sequence[Passage]]) -> list[Passage]:
    """Union by span (doc_id, start, end), first-seen order, keeping each span's best score."""
    best: dict[tuple[str, int, int], Passage] = {}
    for group in groups:
        for p in group:
            old = best.get(p.key)
            if old is None or p.score > old.score:
                best[p.key] = p if old is None else old.with_score(p.score)
    return list(best.values())


@dataclass
class EvidenceRetriever:
    """Retrieve ``k`` passages per query in one batched call and pool them per claim."""

    retriever: Retriever
    k: int = 3

    def gather(
        self, queries: Sequence[Sequence[str]], cited: Sequence[Sequence[Passage]] | None = None
    ) -> list[list[Passage]]:
        """For claim ``i``: the passages already cited (``cited[i]``) then those retrieved for ``queries[i]``."""
        flat = [q for qs in queries for q in qs]
        results = self.retriever.retrieve(flat, self.k) if flat else []
        out, pos = [], 0
        for i, qs in enumerate(queries):
            groups: list[Sequence[Passage]] = [cited[i]] if cited is not None else []
            groups.extend(results[pos : pos + len(qs)])
            pos += len(qs)
            out.append(merge_passages(groups))
        return out


@dataclass(frozen=True)
class Selected:
    """The evidence kept for one claim, best first, with the judge's support for each."""

    passages: tuple[Passage, ...]
    support: tuple[float, ...]
    #: How many candidates were pooled before selection.
    candidates: int


@dataclass
class EvidenceSelector:
    """Keep the ``count`` best candidates: by the judge's support, or by retrieval score.

    With ``by="judge"`` every candidate is judged (one batched call for all claims); with
    ``by="retrieval"`` only the kept ones are. Either way every kept passage has a support.
    """

    judge: SupportJudge
    count: int = 3
    by: SelectBy = "judge"

    def __post_init__(self) -> None:
        if self.by not in SELECT_BY:
            raise ConfigError(f"unknown evidence selection {self.by!r}: choose one of {', '.join(SELECT_BY)}")
        if self.count < 1:
            raise ConfigError(f"the evidence count must be at least 1 (got {self.count})")

    def select(self, claims: Sequence[str], candidates: Sequence[Sequence[Passage]]) -> list[Selected]:
        pools = [list(c) for c in candidates]
        if self.by == "retrieval":
            pools = [sorted(c, key=lambda p: -p.score)[: self.count] for c in pools]
        pairs = [(evidence_text(p), claim) for claim, pool in zip(claims, pools) for p in pool]
        scores = self.judge.judge(pairs) if pairs else []
        out, pos = [], 0
        for pool, cands in zip(pools, candidates):
            s = [float(x) for x in scores[pos : pos + len(pool)]]
            pos += len(pool)
            order = sorted(range(len(pool)), key=lambda j: (-s[j], j))[: self.count]
            out.append(Selected(tuple(pool[j] for j in order), tuple(s[j] for j in order), len(cands)))
        return out
