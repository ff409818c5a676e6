"""The scorer behind ``citerag eval``: every metric of a predictions file in a few judge rounds.

:func:`evaluate` reads top to bottom:

1. read each example as ALCE does (:func:`read_example`: output clean-up, sentences, claims,
   the citation plan), without any model;
2. collect every (evidence, claim) pair a metric needs: RARR's sentence x document pairs and
   ALCE's joint-passage pairs of the whole file;
3. judge them, de-duplicated, in batched rounds (``chunk_size`` splits a round, for a progress
   bar): ALCE's precision adds its single-document pairs (round 2) and its leave-one-out pairs
   (round 3) only for the sentences where the earlier scores make them decide something;
4. compute each example's figures from the scores (:func:`score_example`).

Reporting is the caller's: the result, :class:`Evaluation`, gives the file-level metrics
(:meth:`Evaluation.metrics`) and one row per example (:meth:`Evaluation.rows`).

Extra metric sections (for example saliency-based citation-use agreement, which needs the
generator) plug into :meth:`Evaluation.metrics` as ``extra={"name": fn}``: each ``fn(evaluation)``
returns a dict of figures (or None when not applicable); the JSON output and the HTML report
show every section.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eval import alce, answers
from eval.alce import CitationInput, ExampleCitations, SentenceCitations
from eval.formats import Example
from eval.pairs import JudgeFn, Pair, PairScores
from eval.rarr_metrics import (
    ExampleAttribution,
    SentenceAttribution,
    attribute,
    attributed_share,
    attribution_pairs,
    mean_support,
    rarr_summary,
)
from verifiers.text import preservation


@dataclass(frozen=True)
class EvalConfig:
    #: A pair is supported when its probability reaches this.
    threshold: float
    #: ALCE's ``--at_most_citations`` (None: no limit).
    at_most_citations: int | None = alce.AT_MOST_CITATIONS
    #: ALCE's QAMPARI mode: comma-split outputs, question-prefixed claims, list answer scores.
    qampari: bool = False
    #: ALCE's cut of outputs with citations at their first newline (they are always stripped
    #: and freed of ``<|im_end|>``, as ALCE does).
    truncate: bool = True
    #: RARR attribution (every sentence against every document); off saves those pairs.
    attribution: bool = True


@dataclass(frozen=True)
class ExampleResult:
    example: Example
    #: The text scored: after ALCE's clean-up for outputs with citations.
    output: str
    #: Whether the clean-up cut the output at a newline.
    truncated: bool
    sentences: tuple[str, ...]
    #: ALCE's decisions; None for texts without citations (revise results) or without sentences.
    citations: ExampleCitations | None
    #: RARR's attribution; None when attribution is off.
    attribution: ExampleAttribution | None
    #: RARR's preservation of the original (revise results only).
    preservation: float | None
    #: Answer-correctness figures of this example (only those its gold answers allow).
    answer: dict[str, float]

    def row(self, threshold: float) -> dict[str, Any]:
        """The per-example JSONL row: figures, then each sentence's decisions."""
        cit, att = self.citations, self.attribution
        row: dict[str, Any] = {
            "id": self.example.id,
            "question": self.example.question,
            "output": self.output,
            "truncated": self.truncated,
            "citation_recall": cit.recall if cit else None,
            "citation_precision": cit.precision if cit else None,
        }
        if att is not None:
            row["attribution"] = att.attribution
            row["attributed"] = attributed_share(att.sentences, threshold)
        if self.preservation is not None:
            row["preservation"] = self.preservation
        if att is not None and att.original is not None:
            row["attribution_original"] = mean_support(att.original)
            row["original_sentences"] = [_attribution_dict(a) for a in att.original]
        row.update(self.answer)
        sentences = []
        for i, text in enumerate(self.sentences):
            item: dict[str, Any] = {"text": text, "claim": alce.claim_text(text)}
            if cit is not None:
                item.update(_citation_dict(cit.sentences[i]))
            if att is not None:
                item.update(_attribution_dict(att.sentences[i]))
            sentences.append(item)
        row["sentences"] = sentences
        return row


def _citation_dict(s: SentenceCitations) -> dict[str, Any]:
    return {
        "citations": list(s.cited),
        "used": list(s.used),
        "status": s.status,
        "support": s.support,
        "recall": s.recall,
        "precision": [{"n": c.n, "alone": c.alone, "without": c.without, "relevant": c.relevant} for c in s.checks],
    }


def _attribution_dict(a: SentenceAttribution) -> dict[str, Any]:
    return {"attribution": a.support, "attribution_doc": a.doc}


#: An extra metrics section: figures computed from the evaluation, or None when not applicable.
Section = Callable[["Evaluation"], "dict[str, Any] | None"]


@dataclass(frozen=True)
class Evaluation:
    config: EvalConfig
    results: tuple[ExampleResult, ...]
    #: Distinct (evidence, claim) pairs judged, judge rounds and judge calls.
    judge_pairs: int
    judge_rounds: int
    judge_calls: int

    def metrics(self, extra: Mapping[str, Section] | None = None) -> dict[str, Any]:
        """Every file-level figure (fractions in [0, 1]) and ``n``, the number of examples."""
        cfg = self.config
        out: dict[str, Any] = {
            "n": len(self.results),
            "citation": alce.citation_summary([r.citations for r in self.results if r.example.cites]),
            "answer": answer_summary([r.answer for r in self.results]),
            "rarr": rarr_summary(
                [r.attribution for r in self.results], [r.preservation for r in self.results], cfg.threshold
            ),
            "settings": {
                "threshold": cfg.threshold,
                "at_most_citations": cfg.at_most_citations,
                "qampari": cfg.qampari,
                "truncate": cfg.truncate,
                "attribution": cfg.attribution,
            },
            "truncated": sum(r.truncated for r in self.results),
            "judge": {"pairs": self.judge_pairs, "rounds": self.judge_rounds, "calls": self.judge_calls},
        }
        for name, section in (extra or {}).items():
            if name in out:
                raise ValueError(f"extra section {name!r} would replace a built-in one")
            figures = section(self)
            if figures is not None:
                out[name] = figures
        return out

    def rows(self) -> list[dict[str, Any]]:
        return [r.row(self.config.threshold) for r in self.results]


#: Answer figures, in display order.
ANSWER_KEYS = (
    "str_em",
    "str_hit",
    "em",
    "answer_in_output",
    "qampari_precision",
    "qampari_recall",
    "qampari_recall_top5",
    "qampari_f1",
    "qampari_f1_top5",
    "qampari_predictions",
)


def answer_summary(per_example: Sequence[Mapping[str, float]]) -> dict[str, float | int | None]:
    """Means over the examples that have each figure; ``n_str_em`` / ``n_answers`` count them."""
    out: dict[str, float | int | None] = {}
    for key in ANSWER_KEYS:
        values = [d[key] for d in per_example if key in d]
        if values:
            out[key] = sum(values) / len(values)
    out["n_str_em"] = sum("str_em" in d for d in per_example)
    out["n_answers"] = sum("em" in d or "qampari_f1" in d for d in per_example)
    return out


def example_answers(example: Example, output: str, qampari: bool) -> dict[str, float]:
    """Answer figures of one example, on its output without citations (as ALCE scores them)."""
    text = alce.remove_citations(output)
    out: dict[str, float] = {}
    if example.qa_pairs:
        out["str_em"], out["str_hit"] = answers.str_em(example.qa_pairs, text)
    if example.answers and qampari:
        q = answers.qampari_scores(example.answers, text)
        out.update(
            qampari_precision=q.precision,
            qampari_recall=q.recall,
            qampari_recall_top5=q.recall_top5,
            qampari_f1=q.f1,
            qampari_f1_top5=q.f1_top5,
            qampari_predictions=q.predictions,
        )
    elif example.answers:
        out["em"] = answers.exact_match(example.answers, text)
        out["answer_in_output"] = answers.answer_in_output(example.answers, text)
    return out


@dataclass(frozen=True)
class ReadExample:
    """One example as the metrics read it, before any judging."""

    example: Example
    #: The output after ALCE's clean-up (outputs with citations only), its sentences and claims.
    text: alce.ReadOutput
    #: The original text, read the same way without the clean-up (revise results only).
    original: alce.ReadOutput | None
    #: ALCE's citation plan; without sentences for texts without citations (revise results).
    citations: alce.CitationPlan


def read_example(example: Example, config: EvalConfig) -> ReadExample:
    """ALCE's text rules (its clean-up only for outputs with citations, as ALCE scores them) and
    its citation plan; the original of a revise result is read as written."""
    text = alce.read_output(
        example.output, example.question, clean=example.cites, first_line=config.truncate, qampari=config.qampari
    )
    original = None
    if example.original is not None:
        original = alce.read_output(example.original, example.question, clean=False, qampari=config.qampari)
    if example.cites:
        plan = alce.plan_citations(CitationInput(text.sentences, example.docs), config.at_most_citations)
    else:
        plan = alce.CitationPlan((), example.docs)
    return ReadExample(example, text, original, plan)


def attribution_needs(read: ReadExample) -> list[Pair]:
    """RARR's pairs: every claim (and every claim of the original) against every document."""
    docs = read.example.docs
    return attribution_pairs(read.text.claims, docs) + attribution_pairs(
        read.original.claims if read.original else (), docs
    )


def score_example(read: ReadExample, scores: Mapping[Pair, float], config: EvalConfig) -> ExampleResult:
    """Every figure of one example, from the scores of the pairs it needed."""
    ex, text = read.example, read.text
    att = None
    if config.attribution:
        original = attribute(read.original.claims, ex.docs, scores) if read.original is not None else None
        att = ExampleAttribution(attribute(text.claims, ex.docs, scores), original)
    pres = preservation(ex.original, text.output) if ex.original is not None else None
    return ExampleResult(
        ex,
        text.output,
        text.truncated,
        text.sentences,
        read.citations.decide(scores, config.threshold),
        att,
        pres,
        example_answers(ex, text.output, config.qampari),
    )


def evaluate(
    examples: Sequence[Example],
    judge: JudgeFn,
    config: EvalConfig,
    *,
    chunk_size: int | None = None,
    progress: bool = False,
) -> Evaluation:
    """Score every example; the judge sees each distinct pair once, in at most three rounds."""
    read = [read_example(ex, config) for ex in examples]  # no model yet
    attribution = [p for r in read for p in attribution_needs(r)] if config.attribution else []

    def needs(known: Mapping[Pair, float]) -> list[Pair]:
        # Attribution's pairs are known up front; ALCE's precision asks for more once it sees scores.
        return [*attribution, *(p for r in read for p in r.citations.needs(known, config.threshold))]

    scores = PairScores(judge, chunk_size=chunk_size, progress=progress)
    scores.fill_rounds(needs)  # batched, de-duplicated judge calls
    results = [score_example(r, scores, config) for r in read]
    return Evaluation(config, tuple(results), len(scores), scores.rounds, scores.calls)
