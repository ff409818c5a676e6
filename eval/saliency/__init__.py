"""Token-level saliency of evidence use: which passages (or evidence sentences, or tokens) an
answer actually depended on.

Methods (:data:`METHODS`):

* ``loo``: leave-one-out log-probability drop per source (``Generator.score``, any backend).
* ``contextcite``: sparse linear surrogate fitted on random ablations (any backend).
* ``ig``: integrated gradients (Captum, transformers backend only).
* ``ixg``: input x gradient (Captum, transformers backend only).

Typical use::

    from eval.saliency import attribute
    from pipeline.generators import make_generator

    gen = make_generator("transformers", None)
    report = attribute(gen, [answer], methods=("loo", "ixg"), level="passage")[0]
    report.attributions["loo"].top(sentence=0, k=2)   # most used passages of sentence 1

Every score is in nats and oriented so that larger means the source raised the answer
sentence's probability more. How prompts are ablated is described in
:mod:`eval.saliency.context`; faithfulness checks live in :mod:`eval.faithfulness`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from eval.saliency.ablation import DEFAULT_ALPHA, DEFAULT_MASKS, context_cite, leave_one_out, score_masks
from eval.saliency.agreement import (
    DEFAULT_THRESHOLD,
    CitationUseAgreement,
    citation_use_agreement,
    compare_citations,
    used_sources,
)
from eval.saliency.context import (
    LEVELS,
    AttributionContext,
    Level,
    Source,
    answer_from_dict,
    answer_from_parts,
    check_level,
    prepare,
    read_answers,
)
from eval.saliency.gradient import DEFAULT_STEPS, gradient_attribution, torch_model
from eval.saliency.results import Attribution, SaliencyReport, TokenSaliency
from pipeline.errors import InputError
from pipeline.prompting import PromptConfig
from pipeline.protocols import Generator
from pipeline.types import AttributedAnswer

log = logging.getLogger(__name__)

ABLATION_METHODS: tuple[str, ...] = ("loo", "contextcite")
GRADIENT_METHODS: tuple[str, ...] = ("ig", "ixg")
#: Every attribution method, in the order reports list them.
METHODS: tuple[str, ...] = ABLATION_METHODS + GRADIENT_METHODS


def resolve_methods(names: str | Sequence[str]) -> tuple[str, ...]:
    """Method names (comma-separated or a list; ``all`` = every method), validated, deduplicated."""
    items = names.split(",") if isinstance(names, str) else list(names)
    out: list[str] = []
    for raw in items:
        name = raw.strip().lower()
        if name == "all":
            out.extend(METHODS)
        elif name in METHODS:
            out.append(name)
        else:
            raise InputError(f"unknown attribution method {raw!r}; valid methods: {', '.join(METHODS)}, all")
    if not out:
        raise InputError(f"no attribution method given; valid methods: {', '.join(METHODS)}, all")
    return tuple(m for m in METHODS if m in out)


def attribute(
    generator: Generator,
    answers: Sequence[AttributedAnswer],
    methods: str | Sequence[str] = ("loo",),
    level: Level = "passage",
    *,
    n_masks: int = DEFAULT_MASKS,
    seed: int = 0,
    alpha: float | None = DEFAULT_ALPHA,
    n_steps: int = DEFAULT_STEPS,
    batch_size: int = 4,
    token_matrix: bool = True,
    cfg: PromptConfig | None = None,
    progress: bool = False,
) -> list[SaliencyReport]:
    """One :class:`SaliencyReport` per answer with every requested method at ``level``.

    Ablation methods score all answers' masked prompts in one batched call per method;
    gradient methods (transformers backend) run per answer, ``batch_size`` sequences per
    forward pass, and with ``token_matrix`` also return the answer x evidence token matrix.
    ``cfg`` must be the prompt configuration the answers were generated with (default: ask's).
    """
    names = resolve_methods(methods)
    check_level(level)
    if any(m in GRADIENT_METHODS for m in names):
        torch_model(generator)  # fail before any work when the backend has no gradients
    contexts = [prepare(a, generator, cfg=cfg) for a in answers]
    per_method: dict[str, list[Attribution]] = {}
    tokens: dict[str, list[TokenSaliency | None]] = {}
    for name in names:
        log.info("attribution method %s on %d answers", name, len(contexts))
        if name == "loo":
            per_method[name] = leave_one_out(generator, contexts, level, progress=progress)
        elif name == "contextcite":
            per_method[name] = context_cite(
                generator, contexts, level, n_masks=n_masks, seed=seed, alpha=alpha, progress=progress
            )
        else:
            results = [
                gradient_attribution(
                    generator,
                    ctx,
                    level,
                    name,
                    n_steps=n_steps,  # type: ignore[arg-type]
                    batch_size=batch_size,
                    token_matrix=token_matrix,
                )
                for ctx in contexts
            ]
            per_method[name] = [a for a, _ in results]
            tokens[name] = [t for _, t in results]
    reports = []
    for i, ctx in enumerate(contexts):
        reports.append(
            SaliencyReport(
                ctx,
                level,
                {name: per_method[name][i] for name in names},
                {name: t[i] for name, t in tokens.items() if t[i] is not None},  # type: ignore[misc]
            )
        )
    return reports


__all__ = [
    "ABLATION_METHODS",
    "DEFAULT_ALPHA",
    "DEFAULT_MASKS",
    "DEFAULT_STEPS",
    "DEFAULT_THRESHOLD",
    "GRADIENT_METHODS",
    "LEVELS",
    "METHODS",
    "Attribution",
    "AttributionContext",
    "CitationUseAgreement",
    "SaliencyReport",
    "Source",
    "TokenSaliency",
    "answer_from_dict",
    "answer_from_parts",
    "attribute",
    "citation_use_agreement",
    "compare_citations",
    "context_cite",
    "gradient_attribution",
    "leave_one_out",
    "prepare",
    "read_answers",
    "resolve_methods",
    "score_masks",
    "used_sources",
]
