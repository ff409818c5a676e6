"""Support scores of (evidence, claim) pairs, filled in batched, de-duplicated rounds.

Every metric in ``eval`` first says which pairs it needs, then reads their scores. A
:class:`PairScores` table collects the pairs of a whole file, drops the ones already scored
and the repeats, and sends the rest to the judge in one call per round (the judge batches and
windows internally). Metrics whose later questions depend on earlier answers (ALCE's
precision) ask again after a round; only the new pairs are judged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from pipeline.errors import CiteragError

#: (evidence / premise, claim / hypothesis)
Pair = tuple[str, str]
#: Any batched support judge: ``SupportJudge.judge`` or a plain function.
JudgeFn = Callable[[Sequence[Pair]], list[float]]


class PairScores(Mapping[Pair, float]):
    """A read-only mapping pair -> support probability that :meth:`fill` extends.

    ``chunk_size`` splits a round into several judge calls of at most that many pairs (sorted
    by length first, so each call pads as little as one big call would); None sends each
    round in one call. ``progress`` shows a bar over the pairs of each round.
    """

    def __init__(self, judge: JudgeFn, *, chunk_size: int | None = None, progress: bool = False) -> None:
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be positive (got {chunk_size})")
        self._judge = judge
        self._scores: dict[Pair, float] = {}
        self.chunk_size = chunk_size
        self.progress = progress
        #: Rounds that sent at least one new pair to the judge.
        self.rounds = 0
        #: Judge calls made (one per round unless ``chunk_size`` splits rounds).
        self.calls = 0

    def __getitem__(self, pair: Pair) -> float:
        return self._scores[pair]

    def __iter__(self) -> Iterator[Pair]:
        return iter(self._scores)

    def __len__(self) -> int:
        return len(self._scores)

    def fill(self, pairs: Iterable[Pair]) -> int:
        """Score the pairs not scored yet (each once); returns how many were new."""
        new = [p for p in dict.fromkeys(pairs) if p not in self._scores]
        if not new:
            return 0
        self.rounds += 1
        if self.chunk_size is None:
            chunks: list[list[Pair]] = [new]
        else:
            ordered = sorted(new, key=lambda p: len(p[0]) + len(p[1]))
            chunks = [ordered[i : i + self.chunk_size] for i in range(0, len(ordered), self.chunk_size)]
        from pipeline.progress import progress_bar

        with progress_bar(
            total=len(new), desc=f"judging (round {self.rounds})", enabled=self.progress, unit="pair"
        ) as bar:
            for chunk in chunks:
                scores = self._judge(chunk)
                self.calls += 1
                if len(scores) != len(chunk):
                    raise CiteragError(f"the judge returned {len(scores)} scores for {len(chunk)} pairs")
                self._scores.update(zip(chunk, (float(s) for s in scores)))
                bar.update(len(chunk))
        return len(new)

    def fill_rounds(self, needs: Callable[[Mapping[Pair, float]], Iterable[Pair]]) -> None:
        """Judge rounds until ``needs(scores so far)`` asks for no new pair: for metrics whose
        later questions depend on earlier answers; pairs already scored are never sent again."""
        while self.fill(needs(self)):
            pass
