"""RARR's automatic attribution and preservation (Gao et al. 2023, "RARR: Researching and
Revising What Language Models Say").

* attribution: for each sentence of a text, the maximum support probability over all the
  evidence passages (for ALCE and ``ask`` files: every document shown; for ``revise`` files:
  every passage the result mentions); averaged over the text's sentences, then over texts.
  ``attributed`` is the share of sentences whose maximum reaches the threshold, which is
  ALCE's AutoAIS without citations (``compute_autoais(citation=False)``: a sentence counts
  when any single document supports it).
* preservation: ``max(1 - Lev(x, y) / len(x), 0)`` with character-level Levenshtein between
  the original ``x`` and the revision ``y`` (:func:`verifiers.text.preservation`).
* f1: the harmonic mean of attribution and preservation over the texts that have an
  original (RARR's F1_AP, with the automatic preservation only).

Evidence is formatted like ALCE's documents (``Title: t\\ntext``), so a pair that ALCE's
precision also needs (one document, one sentence) is judged once for both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from eval.alce import f1, format_document
from eval.formats import Doc
from eval.pairs import Pair


def attribution_pairs(claims: Sequence[str], docs: Sequence[Doc]) -> list[Pair]:
    """Every (document, claim) pair attribution needs."""
    return [(format_document(d), c) for c in claims for d in docs]


@dataclass(frozen=True)
class SentenceAttribution:
    #: Maximum support over the evidence (0.0 without evidence).
    support: float
    #: 1-based number of the best-supporting document (None without evidence).
    doc: int | None


def attribute(
    claims: Sequence[str], docs: Sequence[Doc], scores: Mapping[Pair, float]
) -> tuple[SentenceAttribution, ...]:
    """Each claim's best support among ``docs`` (the pairs must be scored)."""
    out = []
    for c in claims:
        best, where = 0.0, None
        for n, d in enumerate(docs, start=1):
            s = scores[(format_document(d), c)]
            if where is None or s > best:
                best, where = s, n
        out.append(SentenceAttribution(best, where))
    return tuple(out)


def mean_support(sentences: Sequence[SentenceAttribution]) -> float | None:
    return sum(s.support for s in sentences) / len(sentences) if sentences else None


def attributed_share(sentences: Sequence[SentenceAttribution], threshold: float) -> float | None:
    return sum(s.support >= threshold for s in sentences) / len(sentences) if sentences else None


@dataclass(frozen=True)
class ExampleAttribution:
    """RARR's attribution of one text (and of its original, for revise results). A text
    without sentences (an empty revision) has no attribution."""

    sentences: tuple[SentenceAttribution, ...]
    original: tuple[SentenceAttribution, ...] | None = None

    @property
    def attribution(self) -> float | None:
        return mean_support(self.sentences)


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def rarr_summary(
    attributions: Sequence[ExampleAttribution | None], preservations: Sequence[float | None], threshold: float
) -> dict[str, float | int | None]:
    """File-level RARR figures (fractions in [0, 1]) from per-example values (aligned lists;
    None where not measured).

    ``attribution`` and ``attributed`` average over texts with sentences; ``preservation`` and
    ``attribution_original`` over texts with an original; ``f1`` combines the attribution and
    the preservation of the texts with an original.
    """
    measured = [a for a in attributions if a is not None]
    revised_attribution = _mean(
        [a.attribution for a, p in zip(attributions, preservations) if a is not None and p is not None]
    )
    preservation = _mean(preservations)
    return {
        "n": sum(bool(a.sentences) for a in measured),
        "attribution": _mean([a.attribution for a in measured]),
        "attributed": _mean([attributed_share(a.sentences, threshold) for a in measured]),
        "n_revised": sum(p is not None for p in preservations),
        "attribution_original": _mean([mean_support(a.original) for a in measured if a.original is not None]),
        "preservation": preservation,
        "f1": f1(revised_attribution, preservation)
        if revised_attribution is not None and preservation is not None
        else None,
    }
