"""Ablation attribution through the generator's log-probs (``Generator.score``).

* **leave-one-out** (``loo``): ``scores[j, i]`` = log p(sentence j | all sources) -
  log p(sentence j | all sources but i).
* **ContextCite-style** (``contextcite``): ``n_masks`` random keep-masks (each source kept
  with probability 1/2, seeded); the logit of each answer sentence's probability under every
  masked prompt is regressed on the mask by a sparse linear surrogate (Lasso), whose weights
  are the scores (Cohen-Wang et al., 2024, "ContextCite").

Every method scores all its masked prompts for all answers in one ``Generator.score`` call:
the whole answer is the continuation, so one prompt gives every answer sentence's
log-probability (the sum of its scorable tokens) at once. Through vLLM that is one
``prompt_logprobs`` request batch (fp32 by default), sent in prefix order so that vLLM's
prefix cache computes each shared prefix once (with passage i removed, the instruction,
question and passages 1..i-1 are the full prompt's); through transformers, batched forwards.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from eval.saliency.context import AttributionContext, Level, MaskMatrix
from eval.saliency.results import Attribution
from pipeline.errors import InputError
from pipeline.protocols import Generator, reuses_prompt_prefixes

log = logging.getLogger(__name__)

#: Default number of random ablation masks for ContextCite.
DEFAULT_MASKS = 64
#: Default Lasso penalty of the ContextCite surrogate (None: chosen by 5-fold LassoCV).
DEFAULT_ALPHA = 0.01


#: Masked prompts per ``generator.score`` call when a progress bar is shown (large enough to
#: keep an engine's batches full, small enough for the bar to move).
PROGRESS_CHUNK = 256


def score_masks(
    generator: Generator,
    jobs: Sequence[tuple[AttributionContext, Level, MaskMatrix]],
    *,
    progress: bool = False,
    prefix_order: bool | None = None,
) -> list[np.ndarray]:
    """Answer-sentence log-probs (n_masks, n_sentences) for each ``(context, level, masks)``,
    from ONE ``generator.score`` call over every distinct masked prompt of every job (with
    ``progress``, calls of :data:`PROGRESS_CHUNK` prompts under a progress bar).

    With ``prefix_order`` (default: when the generator :func:`reuses_prompt_prefixes`) the
    prompts are sent in :func:`prefix_order_of` order, so prompts sharing long prefixes (the
    full prompt and each prompt with one later source removed, masks keeping the same first
    sources) are adjacent and a prefix cache computes each shared prefix once. The scores are
    mapped back to the masks, so the result is the same in either order."""
    prompts: list[str] = []
    answers: list[str] = []
    where: dict[tuple[str, str], int] = {}
    slots: list[list[int]] = []
    for ctx, level, masks in jobs:
        rows = []
        for keep in np.asarray(masks, dtype=bool):
            key = (ctx.prompt_for(keep, level), ctx.answer)
            if key not in where:
                where[key] = len(prompts)
                prompts.append(key[0])
                answers.append(key[1])
            rows.append(where[key])
        slots.append(rows)
    if prefix_order is None:
        prefix_order = reuses_prompt_prefixes(generator)
    order = prefix_order_of(prompts, answers) if prefix_order else list(range(len(prompts)))
    sent_p = [prompts[i] for i in order]
    sent_a = [answers[i] for i in order]
    how = " in prefix order" if prefix_order else ""
    log.info("scoring %d masked prompts for %d answers%s", len(prompts), len(jobs), how)
    if progress and len(prompts) > PROGRESS_CHUNK:
        from pipeline.progress import progress_bar

        got = []
        with progress_bar(len(prompts), "ablations", unit="prompt") as bar:
            for i in range(0, len(prompts), PROGRESS_CHUNK):
                chunk = slice(i, i + PROGRESS_CHUNK)
                got += generator.score(sent_p[chunk], sent_a[chunk])
                bar.update(len(sent_p[chunk]))
    else:
        got = generator.score(sent_p, sent_a) if prompts else []
    scored: list[list[float]] = [[] for _ in prompts]
    for pos, i in enumerate(order):
        scored[i] = got[pos]
    out = []
    for (ctx, _, _), rows in zip(jobs, slots):
        out.append(np.array([ctx.sentence_logprobs(scored[r]) for r in rows]).reshape(len(rows), len(ctx.sentences)))
    return out


def prefix_order_of(prompts: Sequence[str], continuations: Sequence[str]) -> list[int]:
    """Indices of the ``(prompt, continuation)`` pairs in the order a prefix cache serves best:
    sorted by text, so any pairs sharing a prefix are contiguous (a depth-first walk of their
    prefix tree), and each prompt follows the ones it shares most with. Sorting the texts
    rather than the masks covers every ablation (passages, evidence sentences, several
    answers at once) and never splits a shared prefix."""
    return sorted(range(len(prompts)), key=lambda i: (prompts[i], continuations[i]))


def loo_masks(n_sources: int) -> MaskMatrix:
    """Row 0 keeps everything; row ``i + 1`` removes source ``i``."""
    return np.vstack([np.ones((1, n_sources), dtype=bool), ~np.eye(n_sources, dtype=bool)])


def random_masks(n_masks: int, n_sources: int, seed: int | Sequence[int], p_keep: float = 0.5) -> MaskMatrix:
    """``n_masks`` keep-masks, each source kept with probability ``p_keep`` (seeded: an int or
    a sequence of ints, as ``numpy.random.default_rng`` takes)."""
    return np.random.default_rng(seed).random((n_masks, n_sources)) < p_keep


def logit_prob(logprob: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)) from log p, stable for tiny p (clipped just below p = 1)."""
    lp = np.minimum(logprob, -1e-9)
    return lp - np.log(-np.expm1(lp))


def leave_one_out(
    generator: Generator, contexts: Sequence[AttributionContext], level: Level, *, progress: bool = False
) -> list[Attribution]:
    """Leave-one-out scores for every context, in one batched scoring call."""
    jobs = [(ctx, level, loo_masks(len(ctx.sources(level)))) for ctx in contexts]
    out = []
    for ctx, lp in zip(contexts, score_masks(generator, jobs, progress=progress)):
        scores = (lp[0][None, :] - lp[1:]).T  # (n_sentences, n_sources)
        out.append(Attribution("loo", level, ctx.sources(level), scores, info={"full_logprob": lp[0]}))
    return out


def context_cite(
    generator: Generator,
    contexts: Sequence[AttributionContext],
    level: Level,
    *,
    n_masks: int = DEFAULT_MASKS,
    seed: int = 0,
    alpha: float | None = DEFAULT_ALPHA,
    progress: bool = False,
) -> list[Attribution]:
    """ContextCite surrogate weights for every context, in one batched scoring call."""
    if n_masks < 2:
        raise InputError(f"ContextCite needs at least 2 ablation masks (got {n_masks}); 32 or more is usual")
    jobs = [(ctx, level, random_masks(n_masks, len(ctx.sources(level)), seed)) for ctx in contexts]
    out = []
    for (ctx, _, masks), lp in zip(jobs, score_masks(generator, jobs, progress=progress)):
        weights, intercept = fit_surrogate(masks, logit_prob(lp), alpha=alpha)
        out.append(
            Attribution(
                "contextcite",
                level,
                ctx.sources(level),
                weights,
                intercept,
                info={"masks": int(n_masks), "seed": int(seed), "alpha": alpha},
            )
        )
    return out


def fit_surrogate(
    masks: MaskMatrix, targets: np.ndarray, *, alpha: float | None = DEFAULT_ALPHA
) -> tuple[np.ndarray, np.ndarray]:
    """Lasso fits of ``targets[:, j]`` on the 0/1 masks: weights (n_targets, n_sources) and
    intercepts (n_targets,). NaN columns (unscorable sentences) give NaN rows."""
    from sklearn.linear_model import Lasso, LassoCV

    x = np.asarray(masks, dtype=float)
    weights = np.full((targets.shape[1], x.shape[1]), np.nan)
    intercepts = np.full(targets.shape[1], np.nan)
    for j in range(targets.shape[1]):
        y = targets[:, j]
        if np.isnan(y).any():
            continue
        model = LassoCV(cv=min(5, len(y)), random_state=0) if alpha is None else Lasso(alpha=alpha)
        model.fit(x, y)
        weights[j], intercepts[j] = model.coef_, model.intercept_
    return weights, intercepts
