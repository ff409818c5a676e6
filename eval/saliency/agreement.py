"""Citation-use agreement: does each answer sentence cite the passages it actually used?

"Used" comes from passage-level ablation: a passage is used by a sentence when removing it
from the prompt lowers the sentence's log-probability by at least ``threshold`` nats
(leave-one-out by default; ContextCite weights on request). Comparing those sets with the
sentence's citations gives the cited-but-unused and used-but-uncited rates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from eval.saliency.ablation import DEFAULT_MASKS, context_cite, leave_one_out
from eval.saliency.context import prepare
from eval.saliency.results import Attribution
from pipeline.errors import InputError
from pipeline.prompting import PromptConfig
from pipeline.protocols import Generator
from pipeline.types import AttributedAnswer

#: Default log-probability drop (nats) above which a passage counts as used by a sentence.
DEFAULT_THRESHOLD = 1.0


def used_sources(
    attribution: Attribution, *, threshold: float = DEFAULT_THRESHOLD, max_sources: int | None = None
) -> list[tuple[int, ...] | None]:
    """Per answer sentence, the numbers of the passages it used (score >= ``threshold``), most
    important first and at most ``max_sources`` of them; None for a sentence with no scorable
    token. Needs a passage-level attribution."""
    if attribution.level != "passage":
        raise InputError("used_sources needs a passage-level attribution (citations name passages)")
    out: list[tuple[int, ...] | None] = []
    for j in range(attribution.scores.shape[0]):
        order = attribution.ranking(j)
        if not order:
            out.append(None)
            continue
        used = [attribution.sources[i].passage for i in order if attribution.scores[j, i] >= threshold]
        out.append(tuple(used[:max_sources] if max_sources is not None else used))
    return out


@dataclass(frozen=True)
class CitationUseAgreement:
    """Counts over (sentence, passage) pairs of every scored sentence of every answer."""

    sentences: int
    #: (sentence, cited passage) pairs and (sentence, used passage) pairs.
    cited: int
    used: int
    cited_unused: int
    used_uncited: int
    #: Sentences whose cited set equals their used set (both may be empty).
    exact: int
    #: For each answer, for each sentence: cited, used (None: unscorable), and the differences.
    per_answer: tuple[tuple[dict[str, Any], ...], ...]
    #: Answers left out (``skip_errors``): (index in the input, why); their ``per_answer`` is empty.
    skipped: tuple[tuple[int, str], ...] = ()

    @property
    def cited_but_unused_rate(self) -> float | None:
        """Share of citations pointing at a passage the sentence did not use."""
        return self.cited_unused / self.cited if self.cited else None

    @property
    def used_but_uncited_rate(self) -> float | None:
        """Share of used passages the sentence does not cite."""
        return self.used_uncited / self.used if self.used else None

    @property
    def exact_rate(self) -> float | None:
        return self.exact / self.sentences if self.sentences else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "sentences": self.sentences,
            "cited": self.cited,
            "used": self.used,
            "cited_unused": self.cited_unused,
            "used_uncited": self.used_uncited,
            "exact": self.exact,
            "cited_but_unused_rate": self.cited_but_unused_rate,
            "used_but_uncited_rate": self.used_but_uncited_rate,
            "exact_rate": self.exact_rate,
            "skipped": [{"answer": i, "reason": why} for i, why in self.skipped],
            "per_answer": [list(a) for a in self.per_answer],
        }


def compare_citations(
    cited: Sequence[Sequence[Sequence[int]]], used: Sequence[Sequence[Sequence[int] | None]]
) -> CitationUseAgreement:
    """Agreement of per-answer, per-sentence cited passage numbers with used ones (None:
    the sentence could not be scored and is left out of every count)."""
    if len(cited) != len(used) or any(len(c) != len(u) for c, u in zip(cited, used)):
        raise InputError("cited and used must have the same answers and sentences")
    n = n_cited = n_used = n_cu = n_uc = n_exact = 0
    per_answer = []
    for c_answer, u_answer in zip(cited, used):
        rows = []
        for c, u in zip(c_answer, u_answer):
            cs = list(dict.fromkeys(int(x) for x in c))
            if u is None:
                rows.append({"cited": cs, "used": None, "cited_unused": [], "used_uncited": []})
                continue
            us = list(dict.fromkeys(int(x) for x in u))
            cu = [x for x in cs if x not in us]
            uc = [x for x in us if x not in cs]
            n += 1
            n_cited += len(cs)
            n_used += len(us)
            n_cu += len(cu)
            n_uc += len(uc)
            n_exact += set(cs) == set(us)
            rows.append({"cited": cs, "used": us, "cited_unused": cu, "used_uncited": uc})
        per_answer.append(tuple(rows))
    return CitationUseAgreement(n, n_cited, n_used, n_cu, n_uc, n_exact, tuple(per_answer))


def citation_use_agreement(
    generator: Generator,
    answers: Sequence[AttributedAnswer],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    max_sources: int | None = None,
    method: str = "loo",
    n_masks: int = DEFAULT_MASKS,
    seed: int = 0,
    cfg: PromptConfig | None = None,
    skip_errors: bool = False,
    progress: bool = False,
) -> CitationUseAgreement:
    """Cited-but-unused and used-but-uncited rates of ``answers`` under ``generator``.

    Each answer's prompt is rebuilt as ``citerag ask`` built it (``cfg``), every passage is
    ablated (``method``: ``loo`` or ``contextcite``) with all answers scored in one batched
    call, and each sentence's used passages (:func:`used_sources`) are compared with its
    citations (post-hoc ones included). The generator must be the one that wrote the answers
    for "used" to mean what the model relied on.

    With ``skip_errors`` an answer that cannot be attributed (empty, no passages, prompt over
    the window) is left out and listed in ``skipped`` instead of failing the whole file.
    """
    if method not in ("loo", "contextcite"):
        raise InputError(f"citation-use agreement uses ablation; valid methods: loo, contextcite (got {method!r})")
    contexts = []
    kept: list[int] = []
    skipped: list[tuple[int, str]] = []
    for i, a in enumerate(answers):
        try:
            contexts.append(prepare(a, generator, cfg=cfg))
            kept.append(i)
        except InputError as exc:  # ContextBudgetError is an InputError
            if not skip_errors:
                raise
            skipped.append((i, str(exc)))
    if method == "loo":
        atts = leave_one_out(generator, contexts, "passage", progress=progress) if contexts else []
    else:
        atts = (
            context_cite(generator, contexts, "passage", n_masks=n_masks, seed=seed, progress=progress)
            if contexts
            else []
        )
    used = [used_sources(a, threshold=threshold, max_sources=max_sources) for a in atts]
    cited = [[s.citations for s in ctx.sentences] for ctx in contexts]
    agg = compare_citations(cited, used)
    per_answer: list[tuple[dict[str, Any], ...]] = [() for _ in answers]
    for i, rows in zip(kept, agg.per_answer):
        per_answer[i] = rows
    return replace(agg, per_answer=tuple(per_answer), skipped=tuple(skipped))


__all__ = ["DEFAULT_THRESHOLD", "CitationUseAgreement", "citation_use_agreement", "compare_citations", "used_sources"]
