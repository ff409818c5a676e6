"""Is a saliency method faithful? Two checks by ablation through ``Generator.score``:

* **top-k drop against random**: for each answer sentence, the drop in its log-probability
  when the ``k`` sources the method ranks highest for it are removed, against the mean drop
  when ``k`` sources drawn at random are removed (one draw per seed). A faithful method's
  top-k drop is larger.
* **LDS** (linear datamodeling score): on held-out random ablations (each source kept with
  probability 1/2, drawn independently of ContextCite's fitting masks), the Spearman rank
  correlation between the log-probability the method predicts (the sum of the kept sources'
  scores, plus the intercept for ContextCite) and the actual one. Rank-based, so the
  ContextCite surrogate's logit scale and the others' nats compare directly.

All ablations of all reports and methods go to the generator in one batched call.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from eval.saliency.ablation import random_masks, score_masks
from eval.saliency.results import SaliencyReport
from pipeline.errors import InputError
from pipeline.protocols import Generator

#: Defaults of :func:`check_faithfulness`.
DEFAULT_SEEDS = 5
DEFAULT_HELDOUT = 32


@dataclass(frozen=True)
class Faithfulness:
    """Per answer sentence (NaN where it cannot be scored): log-prob drops and LDS."""

    method: str
    k: int
    topk_drop: np.ndarray
    random_drop: np.ndarray
    lds: np.ndarray

    @property
    def mean_topk_drop(self) -> float | None:
        return _nanmean(self.topk_drop)

    @property
    def mean_random_drop(self) -> float | None:
        return _nanmean(self.random_drop)

    @property
    def mean_lds(self) -> float | None:
        return _nanmean(self.lds)

    def to_dict(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "topk_drop": self.mean_topk_drop,
            "random_drop": self.mean_random_drop,
            "lds": self.mean_lds,
            "per_sentence": [
                {"topk_drop": _num(a), "random_drop": _num(b), "lds": _num(c)}
                for a, b, c in zip(self.topk_drop, self.random_drop, self.lds)
            ],
        }


def check_faithfulness(
    generator: Generator,
    reports: Sequence[SaliencyReport],
    *,
    k: int = 1,
    seeds: int = DEFAULT_SEEDS,
    n_heldout: int = DEFAULT_HELDOUT,
    seed: int = 0,
) -> list[SaliencyReport]:
    """``reports`` with ``faithfulness`` filled for every method (one scoring call in all).

    ``k`` is clamped to the number of sources (when it equals it, top-k and random remove
    the same set). ``generator`` must be the one the attributions were computed with.
    """
    if k < 1 or seeds < 1 or n_heldout < 2:
        raise InputError(f"need k >= 1, seeds >= 1 and at least 2 held-out ablations (got {k}, {seeds}, {n_heldout})")
    jobs, layouts = [], []
    for rep in reports:
        d = len(rep.sources)
        kk = min(k, d)
        rows: list[np.ndarray] = [np.ones(d, dtype=bool)]
        top_rows: dict[str, list[int | None]] = {}
        for name, att in rep.attributions.items():
            top_rows[name] = []
            for j in range(len(rep.context.sentences)):
                order = att.ranking(j)
                if not order:
                    top_rows[name].append(None)
                    continue
                rows.append(_without(d, order[:kk]))
                top_rows[name].append(len(rows) - 1)
        rng = np.random.default_rng([seed, 1])
        rand_start = len(rows)
        rows.extend(_without(d, rng.choice(d, kk, replace=False)) for _ in range(seeds))
        held_start = len(rows)
        heldout = random_masks(n_heldout, d, seed=[seed, 2])
        rows.extend(heldout)
        jobs.append((rep.context, rep.level, np.array(rows)))
        layouts.append((kk, top_rows, rand_start, held_start, heldout))
    out = []
    for rep, lp, (kk, top_rows, rand_start, held_start, heldout) in zip(reports, score_masks(generator, jobs), layouts):
        full = lp[0]
        random_drop = np.mean(full[None, :] - lp[rand_start:held_start], axis=0)
        actual = lp[held_start:]
        results = {}
        for name, att in rep.attributions.items():
            top = np.array([full[j] - lp[r, j] if r is not None else np.nan for j, r in enumerate(top_rows[name])])
            pred = att.predict(heldout)
            lds = np.array([_spearman(pred[:, j], actual[:, j]) for j in range(len(full))])
            results[name] = Faithfulness(name, kk, top, random_drop.copy(), lds)
        out.append(replace(rep, faithfulness=results))
    return out


def summarize(reports: Sequence[SaliencyReport]) -> dict[str, dict[str, float | int | None]]:
    """Per method, the means over every scored sentence of every report, and the share of
    sentences where the top-k drop beats the random one."""
    merged: dict[str, list[Faithfulness]] = {}
    for rep in reports:
        for name, f in rep.faithfulness.items():
            merged.setdefault(name, []).append(f)
    out: dict[str, dict[str, float | int | None]] = {}
    for name, fs in merged.items():
        top = np.concatenate([f.topk_drop for f in fs])
        rnd = np.concatenate([f.random_drop for f in fs])
        lds = np.concatenate([f.lds for f in fs])
        ok = ~np.isnan(top) & ~np.isnan(rnd)
        out[name] = {
            "sentences": int(ok.sum()),
            "topk_drop": _nanmean(top),
            "random_drop": _nanmean(rnd),
            "topk_beats_random": float(np.mean(top[ok] > rnd[ok])) if ok.any() else None,
            "lds": _nanmean(lds),
        }
    return out


def _without(d: int, removed: Sequence[int] | np.ndarray) -> np.ndarray:
    keep = np.ones(d, dtype=bool)
    keep[list(removed)] = False
    return keep


def _spearman(pred: np.ndarray, actual: np.ndarray) -> float:
    """Spearman correlation; NaN when either side is constant or not finite."""
    from scipy.stats import spearmanr

    if not (np.isfinite(pred).all() and np.isfinite(actual).all()) or np.ptp(pred) == 0 or np.ptp(actual) == 0:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(spearmanr(pred, actual).statistic)


def _nanmean(a: np.ndarray) -> float | None:
    a = np.asarray(a, dtype=float)
    return float(np.nanmean(a)) if np.isfinite(a).any() else None


def _num(v: float) -> float | None:
    return None if math.isnan(float(v)) else float(v)
