"""A support judge against human labels: accuracy, macro-F1, per-source figures, calibration.

Labelled data is read with the training readers (AttributionBench's claim / references /
attribution_label, and the other formats of :mod:`verifiers.judge_train`); the source of each
pair (``src_dataset`` for AttributionBench) gives the per-source breakdown.
"""

from __future__ import annotations

import logging
import random
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.protocols import SupportJudge
from verifiers.judge_train import LabelledPair, read_pairs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BinaryScores:
    n: int
    accuracy: float
    macro_f1: float
    f1_supported: float
    f1_not_supported: float


def _f1(tp: int, fp: int, fn: int) -> float:
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def binary_scores(labels: Sequence[int], preds: Sequence[bool | int]) -> BinaryScores:
    """Accuracy and macro-F1 (the mean of both classes' F1) of binary predictions."""
    tp = fp = fn = tn = 0
    for y, p in zip(labels, preds):
        if p and y:
            tp += 1
        elif p and not y:
            fp += 1
        elif not p and y:
            fn += 1
        else:
            tn += 1
    n = tp + fp + fn + tn
    f_pos = _f1(tp, fp, fn)
    f_neg = _f1(tn, fn, fp)
    return BinaryScores(n, (tp + tn) / n if n else 0.0, (f_pos + f_neg) / 2, f_pos, f_neg)


def calibrate_threshold(labels: Sequence[int], scores: Sequence[float]) -> tuple[float, float]:
    """The threshold (predict support when score >= t) maximising macro-F1, and that macro-F1.

    Candidates are the midpoints between consecutive distinct scores (plus the ends); ties go
    to the candidate closest to 0.5.
    """
    if not scores:
        raise ValueError("calibration needs at least one scored pair")
    distinct = sorted(set(float(s) for s in scores))
    cands = [distinct[0] - 1e-6] + [(a + b) / 2 for a, b in zip(distinct, distinct[1:])] + [distinct[-1] + 1e-6]
    best_t, best_f = 0.5, -1.0
    for t in cands:
        f = binary_scores(labels, [s >= t for s in scores]).macro_f1
        if f > best_f + 1e-12 or (abs(f - best_f) <= 1e-12 and abs(t - 0.5) < abs(best_t - 0.5)):
            best_t, best_f = t, f
    return best_t, best_f


def held_out_macro_f1(labels: Sequence[int], scores: Sequence[float], *, folds: int = 2, seed: int = 13) -> float:
    """Macro-F1 of a threshold calibrated on other data: the pairs are dealt into ``folds``
    seeded folds; each fold is scored at the threshold calibrated on the rest, and the
    held-out predictions are pooled. An honest figure beside the in-sample calibrated one."""
    if folds < 2 or len(scores) < folds:
        raise ValueError(f"need at least {folds} scored pairs and 2 folds")
    order = list(range(len(scores)))
    random.Random(seed).shuffle(order)
    preds: dict[int, bool] = {}
    for f in range(folds):
        test = set(order[f::folds])
        train = [i for i in order if i not in test]
        t, _ = calibrate_threshold([labels[i] for i in train], [scores[i] for i in train])
        preds.update({i: scores[i] >= t for i in test})
    return binary_scores(list(labels), [preds[i] for i in range(len(scores))]).macro_f1


def evaluate_judge(
    judge: SupportJudge,
    pairs: Sequence[LabelledPair],
    *,
    threshold: float | None = None,
    calibrate: bool = False,
) -> dict[str, Any]:
    """Score ``pairs`` with ``judge`` (one batched call) and compare with their labels.

    The threshold is ``threshold``, else the judge's own (``judge.threshold``, default 0.5), or,
    with ``calibrate``, the one that maximises macro-F1 on these pairs.
    """
    t0 = time.time()
    scores = judge.judge([(p.evidence, p.claim) for p in pairs])
    seconds = time.time() - t0
    labels = [p.label for p in pairs]
    used = float(threshold if threshold is not None else getattr(judge, "threshold", 0.5))
    uncalibrated = binary_scores(labels, [s >= used for s in scores])
    if calibrate:
        used, _ = calibrate_threshold(labels, scores)
    overall = binary_scores(labels, [s >= used for s in scores])
    by_source: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(pairs):
        by_source[p.source].append(i)
    per_source = {}
    for src, idx in sorted(by_source.items()):
        s = binary_scores([labels[i] for i in idx], [scores[i] >= used for i in idx])
        per_source[src] = {"n": s.n, "accuracy": round(s.accuracy, 4), "macro_f1": round(s.macro_f1, 4)}
    return {
        "n": overall.n,
        "accuracy": round(overall.accuracy, 4),
        "macro_f1": round(overall.macro_f1, 4),
        "f1_supported": round(overall.f1_supported, 4),
        "f1_not_supported": round(overall.f1_not_supported, 4),
        "threshold": round(used, 6),
        "calibrated": calibrate,
        "before_calibration": {"threshold": threshold if threshold is not None else getattr(judge, "threshold", 0.5),
                               "macro_f1": round(uncalibrated.macro_f1, 4),
                               "accuracy": round(uncalibrated.accuracy, 4)} if calibrate else None,
        "held_out_macro_f1": round(held_out_macro_f1(labels, scores), 4) if calibrate and len(scores) >= 4 else None,
        "per_source": per_source,
        "seconds": round(seconds, 2),
        "pairs_per_second": round(len(pairs) / seconds, 2) if seconds > 0 else None,
        "scores": scores,
    }


def load_eval_pairs(paths: Sequence[str | Path], *, limit: int | None = None, seed: int = 13) -> list[LabelledPair]:
    """Labelled pairs from evaluation files (any training format; AttributionBench typically)."""
    out: list[LabelledPair] = []
    for p in paths:
        out.extend(read_pairs(p, max_pairs=limit, seed=seed, extra=False))
    return out
