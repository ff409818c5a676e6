"""A support judge against human labels: accuracy, macro-F1, per-source figures, calibration.

Labelled data is read with the training readers (AttributionBench's claim / references /
attribution_label, and the other formats of :mod:`verifiers.judge_train`); the source of each
pair (``src_dataset`` for AttributionBench) gives the per-source breakdown.

The honest protocol (:func:`split_of`, :func:`evaluate_protocol`): pairs are split *by
question* (a hash of the normalised question text; the claim when a pair has no question)
into a ``selection`` half and a ``report`` half. Runs, windows and thresholds are chosen on
the selection half only; the report half gives the figure, with a bootstrap 95% interval
that resamples questions (claims of one question are not independent).
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import InputError
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
    resamples: int = 1000,
) -> dict[str, Any]:
    """Score ``pairs`` with ``judge`` (one batched call) and compare with their labels.

    The threshold is ``threshold``, else the judge's own (``judge.threshold``, default 0.5), or,
    with ``calibrate``, the one that maximises macro-F1 on these pairs.
    """
    t0 = time.time()
    scores = judge.judge([(p.evidence, p.claim) for p in pairs])
    seconds = time.time() - t0
    stats = dict(getattr(judge, "last_stats", {}) or {})
    labels = [p.label for p in pairs]
    used = float(threshold if threshold is not None else judge.threshold)
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
    lo, hi = (
        bootstrap_macro_f1(labels, [s >= used for s in scores], [question_key(p) for p in pairs], resamples=resamples)
        if pairs
        else (0.0, 0.0)
    )
    return {
        "n": overall.n,
        "scored": len(scores),
        "refused": len(pairs) - len(scores),
        "judge_stats": stats,
        "accuracy": round(overall.accuracy, 4),
        "macro_f1": round(overall.macro_f1, 4),
        "macro_f1_ci95": [round(lo, 4), round(hi, 4)],
        "f1_supported": round(overall.f1_supported, 4),
        "f1_not_supported": round(overall.f1_not_supported, 4),
        "threshold": round(used, 6),
        "calibrated": calibrate,
        "before_calibration": {
            "threshold": threshold if threshold is not None else judge.threshold,
            "macro_f1": round(uncalibrated.macro_f1, 4),
            "accuracy": round(uncalibrated.accuracy, 4),
        }
        if calibrate
        else None,
        "held_out_macro_f1": round(held_out_macro_f1(labels, scores), 4) if calibrate and len(scores) >= 4 else None,
        "per_source": per_source,
        "seconds": round(seconds, 2),
        "pairs_per_second": round(len(pairs) / seconds, 2) if seconds > 0 else None,
        "scores": scores,
    }


def load_eval_pairs(
    paths: Sequence[str | Path], *, limit: int | None = None, seed: int = 13, split: str = "all"
) -> list[LabelledPair]:
    """Labelled pairs from evaluation files (any training format; AttributionBench typically),
    only those of one half when ``split`` is ``selection`` or ``report``."""
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    out: list[LabelledPair] = []
    for p in paths:
        out.extend(read_pairs(p, max_pairs=limit, seed=seed, extra=False))
    if split in HALVES:
        out = [p for p in out if split_of(p) == split]
    return out


# ---------------------------------------------------------------- the split-by-question protocol

#: The halves, and the values ``--split`` takes (``both``: score both halves in one run).
HALVES = ("selection", "report")
SPLITS = ("selection", "report", "all", "both")


def question_key(pair: LabelledPair) -> str:
    """What a pair is grouped by: its normalised question (lower case, words only), else its claim."""
    text = pair.question or pair.claim
    return " ".join(re.findall(r"\w+", text.lower()))


def split_of(pair: LabelledPair) -> str:
    """``selection`` or ``report``: the parity of the first byte of the SHA-256 of the pair's
    normalised question, so every claim of one question falls in the same half, always."""
    digest = hashlib.sha256(question_key(pair).encode("utf-8")).digest()
    return HALVES[digest[0] % 2]


def bootstrap_macro_f1(
    labels: Sequence[int],
    preds: Sequence[bool],
    groups: Sequence[str],
    *,
    resamples: int = 1000,
    seed: int = 13,
) -> tuple[float, float]:
    """Bootstrap 95% interval (2.5th and 97.5th percentiles) of macro-F1, resampling *groups*
    (questions) with replacement, a fixed seed."""
    by_group: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        by_group[g].append(i)
    keys = sorted(by_group)
    if not keys:
        raise ValueError("bootstrap needs at least one pair")
    rng = random.Random(seed)
    values = []
    for _ in range(resamples):
        idx = [i for k in rng.choices(keys, k=len(keys)) for i in by_group[k]]
        values.append(binary_scores([labels[i] for i in idx], [preds[i] for i in idx]).macro_f1)
    values.sort()
    lo = values[int(0.025 * (resamples - 1))]
    hi = values[int(round(0.975 * (resamples - 1)))]
    return lo, hi


def figures(
    pairs: Sequence[LabelledPair], scores: Sequence[float], threshold: float, *, resamples: int = 1000, seed: int = 13
) -> dict[str, Any]:
    """Accuracy, macro-F1 with its question-bootstrap 95% interval, and per-source figures at one threshold."""
    labels = [p.label for p in pairs]
    preds = [s >= threshold for s in scores]
    overall = binary_scores(labels, preds)
    lo, hi = bootstrap_macro_f1(labels, preds, [question_key(p) for p in pairs], resamples=resamples, seed=seed)
    by_source: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(pairs):
        by_source[p.source].append(i)
    per_source = {}
    for src, idx in sorted(by_source.items()):
        s = binary_scores([labels[i] for i in idx], [preds[i] for i in idx])
        per_source[src] = {"n": s.n, "accuracy": round(s.accuracy, 4), "macro_f1": round(s.macro_f1, 4)}
    return {
        "n": overall.n,
        "questions": len({question_key(p) for p in pairs}),
        "threshold": round(threshold, 6),
        "accuracy": round(overall.accuracy, 4),
        "macro_f1": round(overall.macro_f1, 4),
        "macro_f1_ci95": [round(lo, 4), round(hi, 4)],
        "per_source": per_source,
    }


def evaluate_protocol(
    judge: SupportJudge,
    pairs: Sequence[LabelledPair],
    *,
    threshold: float | None = None,
    calibrate: bool = False,
    resamples: int = 1000,
    seed: int = 13,
) -> dict[str, Any]:
    """Score both halves in one batched call; the threshold is the judge's own (or
    ``threshold``), or, with ``calibrate``, the one fitted on the *selection* half only. Returns
    figures for each half at that threshold; the report half's is the one to quote."""
    t0 = time.time()
    scores = judge.judge([(p.evidence, p.claim) for p in pairs])
    seconds = time.time() - t0
    stats = dict(getattr(judge, "last_stats", {}) or {})
    halves = {h: [i for i, p in enumerate(pairs) if split_of(p) == h] for h in HALVES}
    if not halves["selection"] or not halves["report"]:
        raise InputError("both halves need pairs: give more data (the split is by question)")
    used = float(threshold if threshold is not None else judge.threshold)
    sel = halves["selection"]
    if calibrate:
        used, _ = calibrate_threshold([pairs[i].label for i in sel], [scores[i] for i in sel])
    out: dict[str, Any] = {
        "protocol": "split by question (sha256 of the normalised question); threshold "
        + ("fitted on the selection half" if calibrate else "given, not fitted")
        + f"; 95% interval: bootstrap over questions, {resamples} resamples, seed {seed}",
        "threshold": round(used, 6),
        "calibrated_on": "selection" if calibrate else None,
        "n": len(pairs),
        "scored": len(scores),
        "refused": len(pairs) - len(scores),
        "judge_stats": stats,
        "seconds": round(seconds, 2),
        "scores": scores,
    }
    for h, idx in halves.items():
        out[h] = figures([pairs[i] for i in idx], [scores[i] for i in idx], used, resamples=resamples, seed=seed)
    return out
