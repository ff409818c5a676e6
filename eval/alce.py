"""ALCE's citation recall and precision (Gao et al. 2023), with the semantics of
``compute_autoais(..., citation=True)`` in princeton-nlp/ALCE ``eval.py``.

Each rule below names the ALCE behaviour it mirrors. The one deliberate difference is
that ALCE's NLI model (TRUE, a T5) answers 0/1 while citerag's judges return probabilities:
a pair counts as supported when its probability reaches the judge's threshold.

The logic is split so that a whole file is scored with few, batched judge calls:
:func:`read_output` applies ALCE's text rules to an output (clean-up, sentences, claims) and
:func:`plan_citations` parses its citations, both without any model; the resulting
:class:`CitationPlan` says which (evidence, claim) pairs it still needs given the scores known
so far (:meth:`CitationPlan.needs`: ALCE's precision asks about single passages only when the
joint passage supports the sentence, and about leave-one-out passages only when a single
passage does not) and assembles the decisions once everything is scored
(:meth:`CitationPlan.decide`). :func:`score_citations` runs those rounds through
:class:`eval.pairs.PairScores`; :func:`score_citations_sequential` is ALCE's own control flow,
one judge call per pair with no de-duplication (the benchmark baseline and a cross-check of
the batched path).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from eval.formats import Doc
from eval.pairs import JudgeFn, Pair, PairScores
from pipeline.citations import marker_number

#: ALCE reads citation ids with this pattern: ``[2]``, ``[2, 3]`` (only 2), ``[2][3]``.
CITATION_RE = re.compile(r"\[\d+")
#: ALCE's default ``--at_most_citations``.
AT_MOST_CITATIONS = 3

Status = Literal["no_citation", "out_of_range", "judged"]


# ---------------------------------------------------------------- text rules (no model)


def clean_output(output: str, *, first_line: bool = True) -> tuple[str, bool]:
    """ALCE's clean-up of every output before any metric: surrounding whitespace removed,
    cut at the first newline (unless ``first_line`` is False), ``<|im_end|>`` removed.
    Returns (text, whether it was cut)."""
    stripped = output.strip()
    kept = stripped.split("\n")[0] if first_line else stripped
    return kept.replace("<|im_end|>", ""), kept != stripped


def remove_citations(text: str) -> str:
    """ALCE's ``remove_citations``: delete every ``" [n"`` then every remaining ``"[n"``
    opening, every ``" |"``, and every ``"]"`` (so ``[1, 2]`` leaves ``", 2"``, as in ALCE)."""
    text = re.sub(r" \[\d+", "", text)
    text = CITATION_RE.sub("", text)
    return text.replace(" |", "").replace("]", "")


def claim_text(sentence: str) -> str:
    """What the judge reads for a sentence: its citations removed, then stripped (ALCE's
    ``target_sent``)."""
    return remove_citations(sentence).strip()


def split_output(output: str, question: str = "", *, qampari: bool = False) -> list[str]:
    """The sentences ALCE scores, citation markers still in.

    Default: NLTK's Punkt English model (``nltk.sent_tokenize``; the ``punkt`` package
    reproduces it without NLTK). An empty output has no sentences, and ALCE then skips the
    example in every average. QAMPARI: trailing whitespace, then trailing ``.``, then trailing
    ``,`` removed, the rest split on commas, and each item (stripped) prefixed by the question
    and a space, so that the judge reads "question item".
    """
    if qampari:
        items = output.rstrip().rstrip(".").rstrip(",").split(",")
        return [f"{question} {item.strip()}" for item in items]
    import punkt

    return punkt.sent_tokenize(output)


@dataclass(frozen=True)
class ReadOutput:
    """An output as ALCE's metrics read it, before any judging."""

    #: The text scored: after ALCE's clean-up when ``clean`` was asked for.
    output: str
    #: Whether the clean-up cut the output at a newline.
    truncated: bool
    #: The sentences scored, citation markers still in.
    sentences: tuple[str, ...]
    #: What the judge reads for each sentence (:func:`claim_text`).
    claims: tuple[str, ...]


def read_output(
    output: str, question: str = "", *, clean: bool = True, first_line: bool = True, qampari: bool = False
) -> ReadOutput:
    """ALCE's text rules in order: the clean-up (:func:`clean_output`, only with ``clean``; ALCE
    cleans outputs with citations), the sentence split (:func:`split_output`), the claims."""
    truncated = False
    if clean:
        output, truncated = clean_output(output, first_line=first_line)
    sentences = tuple(split_output(output, question, qampari=qampari))
    return ReadOutput(output, truncated, sentences, tuple(claim_text(s) for s in sentences))


def cited_ids(sentence: str) -> list[int]:
    """0-based document ids of the sentence's citations in order of appearance, repeats kept
    (ALCE: ``int(match[1:]) - 1`` for every ``\\[\\d+`` match; a number too long for ``int``
    reads as out of range, where ALCE would raise)."""
    return [marker_number(m[1:]) - 1 for m in CITATION_RE.findall(sentence)]


def format_document(doc: Doc) -> str:
    """ALCE's ``_format_document``: ``"Title: {title}\\n{text}"`` (for QA-extracted documents the
    reader already put their ``sent`` in ``text``)."""
    return f"Title: {doc.title}\n{doc.text}"


def joint_passage(docs: Sequence[Doc], ids: Sequence[int]) -> str:
    """The cited documents formatted and joined by newlines, in citation order (ALCE's
    joint passage for recall and for the leave-one-out check)."""
    return "\n".join(format_document(docs[i]) for i in ids)


# ---------------------------------------------------------------- per-sentence plan and decisions


@dataclass(frozen=True)
class SentencePlan:
    """One sentence and what ALCE will judge for it."""

    text: str
    claim: str
    #: Document ids as written (0-based, repeats kept).
    cited: tuple[int, ...]
    #: The ids judged: the first ``at_most`` of ``cited``; empty unless ``status == "judged"``.
    used: tuple[int, ...]
    #: ``no_citation`` and ``out_of_range`` sentences score 0 without a judge call, and none of
    #: their citations enter precision's denominator.
    status: Status


def plan_sentence(sentence: str, n_docs: int, at_most: int | None = AT_MOST_CITATIONS) -> SentencePlan:
    """ALCE's citation rules for one sentence.

    * no ``[n`` at all: recall 0;
    * any id outside the documents, checked on the whole list BEFORE the ``at_most`` cut: recall
      0, and none of the sentence's citations (in range or not) count in precision;
    * otherwise the first ``at_most`` ids (in order of appearance, repeats kept) are judged.

    ``[0]`` is out of range here. ALCE computes id -1 for it, which passes its range check and
    silently cites the last document (Python's negative index); this is the one citation rule
    not mirrored.
    """
    cited = tuple(cited_ids(sentence))
    claim = claim_text(sentence)
    if not cited:
        return SentencePlan(sentence, claim, cited, (), "no_citation")
    if any(i < 0 or i >= n_docs for i in cited):
        return SentencePlan(sentence, claim, cited, (), "out_of_range")
    used = cited if at_most is None else cited[:at_most]
    return SentencePlan(sentence, claim, cited, used, "judged")


def plan_sentences(
    sentences: Sequence[str], n_docs: int, at_most: int | None = AT_MOST_CITATIONS
) -> list[SentencePlan]:
    return [plan_sentence(s, n_docs, at_most) for s in sentences]


@dataclass(frozen=True)
class CitationCheck:
    """Precision's verdict on one judged citation ``n`` (1-based) of a sentence."""

    n: int
    #: Support of the sentence by this document alone (multi-citation sentences the joint
    #: passage supports; None otherwise).
    alone: float | None
    #: Support by the sentence's other judged documents, checked only when ``alone`` is below
    #: the threshold (ALCE's condition B).
    without: float | None
    relevant: bool


@dataclass(frozen=True)
class SentenceCitations:
    """ALCE's decisions for one sentence."""

    text: str
    claim: str
    #: Citation numbers as written (1-based, repeats kept).
    cited: tuple[int, ...]
    #: The numbers judged (1-based): the first ``at_most`` of ``cited`` when all are in range.
    used: tuple[int, ...]
    status: Status
    #: Support of the sentence by the joint passage of ``used`` (None when not judged).
    support: float | None
    recall: int
    checks: tuple[CitationCheck, ...]

    @property
    def precise(self) -> int:
        """Precision's numerator contribution: relevant citations."""
        return sum(c.relevant for c in self.checks)

    @property
    def counted(self) -> int:
        """Precision's denominator contribution: the judged citations (repeats included)."""
        return len(self.used)


def _pair(docs: Sequence[Doc], ids: Sequence[int], claim: str) -> Pair:
    return (joint_passage(docs, ids), claim)


def _leave_one_out(used: Sequence[int], i: int) -> list[int]:
    """``used`` without the first occurrence of id ``i`` (ALCE: ``list.remove``)."""
    rest = list(used)
    rest.remove(i)
    return rest


def sentence_needs(
    plan: SentencePlan, docs: Sequence[Doc], scores: Mapping[Pair, float], threshold: float
) -> list[Pair]:
    """The pairs this sentence still needs scored, given ``scores``; [] once decidable.

    Round 1: the joint passage (recall). Round 2, only for a multi-citation sentence the joint
    passage supports: each judged document alone (ALCE's condition A). Round 3: for each
    document that does not support it alone, the other documents together (condition B).
    """
    if plan.status != "judged":
        return []
    joint = _pair(docs, plan.used, plan.claim)
    if joint not in scores:
        return [joint]
    if scores[joint] < threshold or len(plan.used) < 2:
        return []
    alone = [_pair(docs, [i], plan.claim) for i in plan.used]
    missing = [p for p in alone if p not in scores]
    if missing:
        return missing
    without = [
        _pair(docs, _leave_one_out(plan.used, i), plan.claim) for i, p in zip(plan.used, alone) if scores[p] < threshold
    ]
    return [p for p in without if p not in scores]


def judge_sentence(
    plan: SentencePlan, docs: Sequence[Doc], scores: Mapping[Pair, float], threshold: float
) -> SentenceCitations:
    """ALCE's recall and precision decisions for a sentence whose needed pairs are scored.

    Recall: 1 iff the joint passage of the judged documents supports the claim. Precision:
    nothing counts for unjudged sentences; every judged citation of an unsupported sentence
    is imprecise; a single citation of a supported sentence is precise; in a supported
    multi-citation sentence a citation is irrelevant iff it does not support the claim alone
    AND the remaining judged documents still support it without it.
    """
    cited_n = tuple(i + 1 for i in plan.cited)
    if plan.status != "judged":
        return SentenceCitations(plan.text, plan.claim, cited_n, (), plan.status, None, 0, ())
    used_n = tuple(i + 1 for i in plan.used)
    support = scores[_pair(docs, plan.used, plan.claim)]
    recall = int(support >= threshold)
    if not recall:
        checks = tuple(CitationCheck(n, None, None, False) for n in used_n)
    elif len(plan.used) == 1:
        checks = (CitationCheck(used_n[0], None, None, True),)
    else:
        out = []
        for i in plan.used:
            alone = scores[_pair(docs, [i], plan.claim)]
            if alone >= threshold:
                out.append(CitationCheck(i + 1, alone, None, True))
                continue
            without = scores[_pair(docs, _leave_one_out(plan.used, i), plan.claim)]
            out.append(CitationCheck(i + 1, alone, without, without < threshold))
        checks = tuple(out)
    return SentenceCitations(plan.text, plan.claim, cited_n, used_n, "judged", support, recall, checks)


# ---------------------------------------------------------------- per example and per file


@dataclass(frozen=True)
class ExampleCitations:
    """ALCE's per-example scores: recall averaged over sentences, precision = relevant
    citations / judged citations (0 when nothing was judged)."""

    sentences: tuple[SentenceCitations, ...]

    @property
    def recall(self) -> float:
        return sum(s.recall for s in self.sentences) / len(self.sentences)

    @property
    def precision(self) -> float:
        counted = sum(s.counted for s in self.sentences)
        return sum(s.precise for s in self.sentences) / counted if counted else 0.0


@dataclass(frozen=True)
class CitationInput:
    """What citation scoring reads from one example."""

    sentences: tuple[str, ...]
    docs: tuple[Doc, ...]


@dataclass(frozen=True)
class CitationPlan:
    """ALCE's plan for one example: each sentence's citations, parsed, and the documents they
    point at. It asks for the pairs it needs round by round and then gives the decisions."""

    sentences: tuple[SentencePlan, ...]
    docs: tuple[Doc, ...]

    def needs(self, scores: Mapping[Pair, float], threshold: float) -> list[Pair]:
        """The pairs its sentences still need scored, given ``scores`` (see :func:`sentence_needs`)."""
        return [p for sp in self.sentences for p in sentence_needs(sp, self.docs, scores, threshold)]

    def decide(self, scores: Mapping[Pair, float], threshold: float) -> ExampleCitations | None:
        """The decisions once :meth:`needs` asks for nothing; None without sentences (ALCE skips it)."""
        if not self.sentences:
            return None
        return ExampleCitations(tuple(judge_sentence(sp, self.docs, scores, threshold) for sp in self.sentences))


def plan_citations(inp: CitationInput, at_most: int | None = AT_MOST_CITATIONS) -> CitationPlan:
    return CitationPlan(tuple(plan_sentences(inp.sentences, len(inp.docs), at_most)), inp.docs)


def score_citations(
    inputs: Sequence[CitationInput],
    judge: JudgeFn,
    threshold: float,
    *,
    at_most: int | None = AT_MOST_CITATIONS,
    table: PairScores | None = None,
) -> list[ExampleCitations | None]:
    """ALCE citation scores of many examples in at most three batched, de-duplicated rounds."""
    table = table if table is not None else PairScores(judge)
    plans = [plan_citations(inp, at_most) for inp in inputs]
    table.fill_rounds(lambda scores: [p for plan in plans for p in plan.needs(scores, threshold)])
    return [plan.decide(table, threshold) for plan in plans]


def score_citations_sequential(
    inputs: Sequence[CitationInput], judge: JudgeFn, threshold: float, *, at_most: int | None = AT_MOST_CITATIONS
) -> list[ExampleCitations | None]:
    """ALCE's control flow: one judge call per pair, in ALCE's order, nothing cached.

    Same decisions as :func:`score_citations` (the scores of identical pairs are identical);
    it exists as the one-pair-at-a-time baseline of ``bench/bench_eval.py`` and as an
    independent check of the staged, batched path.
    """
    out: list[ExampleCitations | None] = []
    for inp in inputs:
        plans = plan_sentences(inp.sentences, len(inp.docs), at_most)
        if not plans:
            out.append(None)
            continue
        sentences = []
        for sp in plans:
            scores: dict[Pair, float] = {}
            if sp.status == "judged":
                joint = _pair(inp.docs, sp.used, sp.claim)
                scores[joint] = judge([joint])[0]
                if scores[joint] >= threshold and len(sp.used) > 1:
                    for i in sp.used:
                        alone = _pair(inp.docs, [i], sp.claim)
                        scores[alone] = judge([alone])[0]
                        if scores[alone] < threshold:
                            without = _pair(inp.docs, _leave_one_out(sp.used, i), sp.claim)
                            scores[without] = judge([without])[0]
            sentences.append(judge_sentence(sp, inp.docs, scores, threshold))
        out.append(ExampleCitations(tuple(sentences)))
    return out


def f1(recall: float, precision: float) -> float:
    """Harmonic mean (0 when both are 0)."""
    return 2 * recall * precision / (recall + precision) if recall + precision else 0.0


def citation_summary(results: Sequence[ExampleCitations | None]) -> dict[str, float | int | None]:
    """File-level figures, as fractions in [0, 1] (ALCE prints them x100).

    ``recall`` and ``precision`` are means of the per-example values over the examples that
    have sentences (ALCE's ``citation_rec`` / ``citation_prec``). ``f1`` is the harmonic mean
    of those two file-level means (ALCE reports no F1; this is the usual "citation F1" of
    papers that build on it, not a mean of per-example F1s). ``multi_citation`` is the share
    of sentences with more than one citation, ``multi_supported`` the share of those the joint
    passage supports, and ``overcite`` the share of those with at least one irrelevant citation
    (ALCE's log line counts irrelevant citations instead of sentences).
    """
    scored = [r for r in results if r is not None]
    sentences = [s for r in scored for s in r.sentences]
    multi = [s for s in sentences if len(s.used or s.cited) > 1]
    supported = [s for s in multi if s.recall]
    overcited = [s for s in supported if s.precise < s.counted]
    if not scored:
        return {
            "n": 0,
            "recall": None,
            "precision": None,
            "f1": None,
            "sentences": 0,
            "multi_citation": None,
            "multi_supported": None,
            "overcite": None,
        }
    recall = sum(r.recall for r in scored) / len(scored)
    precision = sum(r.precision for r in scored) / len(scored)
    return {
        "n": len(scored),
        "recall": recall,
        "precision": precision,
        "f1": f1(recall, precision),
        "sentences": len(sentences),
        "multi_citation": len(multi) / len(sentences),
        "multi_supported": len(supported) / len(multi) if multi else None,
        "overcite": len(overcited) / len(supported) if supported else None,
    }
