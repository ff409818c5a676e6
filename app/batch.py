"""The batch work of ``ask --questions``, ``revise --input`` and ``eval --pred`` as jobs: a
picklable description that builds its components once (:meth:`start`) and then turns any
slice of the input into output rows (:meth:`BatchWorker.process`).

The single-process commands run one worker over the whole file; ``--ray`` runs one worker per
Ray actor over batches of it (``app/ray_jobs.py``). Both go through this code, so a row is
computed the same way whichever runs it. Models load inside ``start``, never at import.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pipeline.config import Settings
from pipeline.errors import CiteragError

log = logging.getLogger("citerag.batch")


class BatchWorker(Protocol):
    def process(self, items: Sequence[Any], progress: bool = False) -> list[Any]:
        """One output per item, in order; a bad item gives its error output, not an exception."""
        ...


class BatchJob(Protocol):
    def start(self) -> BatchWorker:
        """Build the components (generator, retriever, judge) once."""
        ...

    def error_output(self, item: Any, message: str) -> Any:
        """What stands in the output for an item that failed."""
        ...


def error_row(item: Any, message: str) -> dict[str, Any]:
    """The error row of a failed input row: the row as given, plus ``error`` (the shape
    ``ask --questions`` has always written for a bad question)."""
    base = dict(item) if isinstance(item, dict) else {"id": getattr(item, "id", None)}
    return {**base, "error": message}


def process_or_split(job: BatchJob, worker: BatchWorker, items: Sequence[Any]) -> list[Any]:
    """``worker.process(items)``; when the batch as a whole raises, each item again alone, so
    only the items that fail become error outputs."""
    try:
        out = worker.process(items)
    except Exception as exc:  # a bug or a crashed engine must not lose the batch's other rows
        if len(items) == 1:
            log.warning("row failed: %s", exc)
            message = str(exc) if isinstance(exc, CiteragError) else f"{type(exc).__name__}: {exc}"
            return [job.error_output(items[0], message)]
        log.warning("batch of %d rows failed (%s); retrying them one by one", len(items), exc)
        return [o for item in items for o in process_or_split(job, worker, [item])]
    if len(out) != len(items):
        raise RuntimeError(f"worker returned {len(out)} outputs for {len(items)} items")
    return out


def run_batch(
    job: BatchJob, items: Sequence[Any], ray_target: str | None, workers: int | None, batch_size: int
) -> list[Any]:
    """Every item's output, in order: one worker over the whole input in this process, or
    (``--ray``) actors over batches of it; either way the job's worker computes each row."""
    if ray_target:
        from app.ray_jobs import run_on_ray

        return run_on_ray(job, items, target=ray_target, workers=workers, batch_size=batch_size)
    return job.start().process(items, progress=True)


# -- ask --------------------------------------------------------------------------------


def needs_judge(pipe: Any, verify: bool, abstain: bool, quotes: bool) -> bool:
    return verify or abstain or quotes or getattr(pipe, "citations", "") == "use-aware"


def check_answers(
    pipe: Any, results: list[Any], judge_name: str, verify: bool, abstain: bool, quotes: bool, *, judge: Any = None
) -> list[Any]:
    """Verify (``--verify``), then ground: support, quotes, abstention. One judge for both
    (``judge``: one already loaded, else ``judge_name`` is loaded)."""
    use_aware = getattr(pipe, "citations", "") == "use-aware"
    if not needs_judge(pipe, verify, abstain, quotes):
        return results
    from verifiers.grounding import AbstainRule, ground_with_pipeline
    from verifiers.judges import load_judge
    from verifiers.memo import MemoJudge

    # Grounding judges again the pairs verification judged: score each distinct pair once.
    memo = MemoJudge(judge if judge is not None else load_judge(judge_name, generator=pipe.generator))
    if verify:
        from verifiers.verify import verify_with_pipeline

        results = verify_with_pipeline(pipe, results, memo)
    return ground_with_pipeline(
        pipe, results, memo, abstain=AbstainRule() if abstain else None, quotes=quotes, use_aware=use_aware
    )


@dataclass(frozen=True)
class AskJob:
    """``ask --questions``: each record ``{"question": ..., ...}`` becomes its answer row."""

    settings: Settings
    judge_name: str = "default"
    verify: bool = False
    abstain: bool = True
    quotes: bool = True

    def start(self) -> AskWorker:
        from app.factory import build_pipeline

        return AskWorker(self, build_pipeline(self.settings))

    def error_output(self, item: Any, message: str) -> dict[str, Any]:
        return error_row(item, message)


class AskWorker:
    def __init__(self, job: AskJob, pipe: Any) -> None:
        self.job, self.pipe = job, pipe
        self._judge: Any = None

    def process(self, items: Sequence[dict[str, Any]], progress: bool = False) -> list[dict[str, Any]]:
        job, pipe = self.job, self.pipe
        if self._judge is None and needs_judge(pipe, job.verify, job.abstain, job.quotes):
            from verifiers.judges import load_judge

            self._judge = load_judge(job.judge_name, generator=pipe.generator)  # once per worker
        results = pipe.ask_many([r["question"] for r in items], progress=progress)
        results = check_answers(pipe, results, job.judge_name, job.verify, job.abstain, job.quotes, judge=self._judge)
        rows = []
        for rec, res in zip(items, results):
            if isinstance(res, CiteragError):
                rows.append(error_row(rec, str(res)))
            else:
                rows.append({**{k: v for k, v in rec.items() if k != "question"}, **res.to_dict()})
        return rows


# -- revise -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviseJob:
    """``revise --input``: each record ``{"text": ..., ...}`` becomes its revision row."""

    settings: Settings
    judge_name: str
    config: Any  # verifiers.rarr.RARRConfig (frozen)
    samples: int
    llm_gate: bool
    editor: str

    def start(self) -> ReviseWorker:
        from app.factory import build_pipeline
        from verifiers.judges import load_judge
        from verifiers.rarr import build_reviser

        judge = load_judge(self.judge_name) if self.judge_name != "llm" else None  # fails before vLLM starts
        pipe = build_pipeline(self.settings)
        if judge is None:
            judge = load_judge(self.judge_name, generator=pipe.generator)
        reviser = build_reviser(pipe.retriever, pipe.generator, judge, self.config, samples=max(self.samples, 1),
                                llm_gate=self.llm_gate, editor=self.editor)  # type: ignore[arg-type]  # fmt: skip
        return ReviseWorker(reviser)

    def error_output(self, item: Any, message: str) -> dict[str, Any]:
        return error_row(item, message)


class ReviseWorker:
    def __init__(self, reviser: Any) -> None:
        self.reviser = reviser

    def process(self, items: Sequence[dict[str, Any]], progress: bool = False) -> list[dict[str, Any]]:
        results = self.reviser.revise_batch([r["text"] for r in items])
        return [{**{k: v for k, v in r.items() if k != "text"}, **res.to_dict()} for r, res in zip(items, results)]


# -- eval -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoredBatch:
    """One example's result from ``eval`` on Ray, with its batch's judge figures on the first
    example of each batch (zeros on the others), so the totals add up."""

    result: Any  # eval.scoring.ExampleResult
    pairs: int = 0
    rounds: int = 0
    calls: int = 0


@dataclass(frozen=True)
class FailedExample:
    id: str
    error: str


@dataclass(frozen=True)
class EvalJob:
    """``eval --pred``: each example becomes its scored result (merged into one
    :class:`~eval.scoring.Evaluation` by :func:`merge_evaluation`)."""

    judge_name: str
    threshold: float | None
    batch_size: int | None
    config: Any  # eval.scoring.EvalConfig, its threshold filled in

    def start(self) -> EvalWorker:
        from verifiers.judges import load_judge

        return EvalWorker(self, load_judge(self.judge_name, threshold=self.threshold, batch_size=self.batch_size))

    def error_output(self, item: Any, message: str) -> FailedExample:
        return FailedExample(str(getattr(item, "id", "")), message)


class EvalWorker:
    def __init__(self, job: EvalJob, judge: Any) -> None:
        self.job, self.judge = job, judge

    def process(self, items: Sequence[Any], progress: bool = False) -> list[ScoredBatch]:
        from eval.scoring import evaluate

        ev = evaluate(items, self.judge.judge, self.job.config, chunk_size=1024, progress=progress)
        return [
            ScoredBatch(r, ev.judge_pairs, ev.judge_rounds, ev.judge_calls) if i == 0 else ScoredBatch(r)
            for i, r in enumerate(ev.results)
        ]


def merge_evaluation(config: Any, outputs: Sequence[ScoredBatch | FailedExample]) -> Any:
    """One :class:`~eval.scoring.Evaluation` of the scored examples, in input order (failed
    ones left out; the caller reports them). Judge pairs are summed over batches: a pair two
    batches share is counted, and judged, in each."""
    from eval.scoring import Evaluation

    ok = [o for o in outputs if isinstance(o, ScoredBatch)]
    return Evaluation(
        config,
        tuple(o.result for o in ok),
        sum(o.pairs for o in ok),
        max((o.rounds for o in ok), default=0),
        sum(o.calls for o in ok),
    )
