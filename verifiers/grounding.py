"""Grounding of a finished answer: per-citation support, supporting quotes, and abstention.

One batched judge pass over every (shown passage, sentence) pair of every answer gives:

* **support** of each sentence by its citations (the maximum over them);
* **quotes**: for each citation the judge finds supportive, the smallest span of the passage
  (one of its sentences, or two adjacent ones) that the judge still finds supportive, by
  character offsets in the source document, like a ``cited_text``; the whole passage when
  no smaller span is;
* **use-aware citations** (optional, :class:`PassageUse`): each sentence is re-cited to the
  judge-supportive shown passages it actually depended on: leave-one-out through the
  generator's batched log-probs (removing passage ``j`` from the prompt lowers the sentence's
  log-probability by at least ``min_drop`` nats);
* **abstention**: when retrieval found nothing relevant (the best cosine between the question
  and a shown passage is below ``AbstainRule.min_relevance``) or no shown passage supports any
  sentence of the answer (judge), the answer becomes ``ABSTAIN_TEXT``; the draft is kept in
  the report (``"abstained": true``, ``"draft"``).

The rule's defaults were chosen on NQ-open selection questions (see BENCHMARKS.md, "Abstention").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pipeline.citations import sentence_spans, strip_markers, with_markers
from pipeline.errors import ConfigError
from pipeline.protocols import SupportJudge
from pipeline.types import AttributedAnswer, Quote, Sentence
from verifiers.claims import checkable
from verifiers.evidence import evidence_text

log = logging.getLogger(__name__)

ABSTAIN_TEXT = "The documents do not answer this question."

Embed = Callable[[list[str]], Any]


@dataclass(frozen=True)
class AbstainRule:
    """Abstain when the best question-passage cosine is below ``min_relevance``, or when no
    shown passage supports any sentence at ``min_support`` (None: the judge's threshold).
    ``require_support=False`` uses relevance alone."""

    #: Chosen on NQ-open selection questions 1000-1099 (bench/abstain_relevance.py): the largest
    #: abstention on unanswerable questions (0.70) with at most 0.08 on answerable ones.
    min_relevance: float = 0.5125
    #: Far below the judge's threshold: SmolLM2's answers are often unsupported at the
    #: threshold (0.24 of answerable selection questions), so only an answer that nothing shown
    #: supports at all abstains (instructions, copied headers and gibberish score ~0);
    #: bench/abstain_support.py: with it, 0.12 of answerable selection questions abstain.
    min_support: float | None = 0.05
    require_support: bool = True

    def __post_init__(self) -> None:
        if not -1.0 <= self.min_relevance <= 1.0:
            raise ConfigError(f"the abstention relevance threshold must be within [-1, 1] (got {self.min_relevance})")
        if self.min_support is not None and not 0.0 <= self.min_support <= 1.0:
            raise ConfigError(f"the abstention support threshold must be within [0, 1] (got {self.min_support})")


@dataclass
class PassageUse:
    """Leave-one-out use of each shown passage by each answer sentence, through ``generator.score``.

    The prompt is rebuilt exactly as the pipeline built it (``prompt`` config, passages as
    shown); the target is the answer with citation markers removed (removing document ``j``
    makes "[j]" unlikely whether or not its content was used). All full prompts are scored
    first, then every leave-one-out variant, so that vLLM's prefix cache reuses the shared
    prefix (the documents before the removed one).
    """

    generator: Any
    prompt: Any = None
    #: A passage counts as used when removing it costs the sentence at least this many nats.
    min_drop: float = 1.0

    def drops(self, answers: Sequence[AttributedAnswer]) -> dict[tuple[int, int], list[float]]:
        from pipeline.prompting import PromptConfig, render

        cfg = self.prompt or PromptConfig()
        tok = self.generator.tokenizer
        jobs = []  # (answer index, target, sentence token bounds, full prompt, variants)
        for ai, a in enumerate(answers):
            if not a.passages or not a.sentences:
                continue
            contents = [strip_markers(s.text) for s in a.sentences]
            target = " ".join(c for c in contents if c)
            if not target:
                continue
            bounds, pos = [], 0
            for c in contents:
                if c:
                    pos = len(target[: target.index(c, pos) + len(c)])
                bounds.append(len(tok.encode(target[:pos])) if c else None)
            docs = list(enumerate(a.passages, start=1))
            full = render(a.question, docs, tok, cfg)
            variants = [render(a.question, [d for d in docs if d[0] != j], tok, cfg) for j, _ in docs]
            jobs.append((ai, target, bounds, full, variants))
        if not jobs:
            return {}
        prompts = [j[3] for j in jobs] + [v for j in jobs for v in j[4]]
        conts = [j[1] for j in jobs] + [j[1] for j in jobs for _ in j[4]]
        scored = self.generator.score(prompts, conts)
        full_lp, rest = scored[: len(jobs)], iter(scored[len(jobs) :])
        out: dict[tuple[int, int], list[float]] = {}
        for (ai, _, bounds, _, variants), base in zip(jobs, full_lp):
            without = [next(rest) for _ in variants]
            prev = 0
            for si, b in enumerate(bounds):
                if b is None:
                    continue
                lo, hi = prev, min(b, len(base))
                prev = hi
                full_sum = sum(base[lo:hi])
                out[(ai, si)] = [full_sum - sum(w[lo:hi]) for w in without]
        return out


@dataclass
class Grounder:
    judge: SupportJudge
    #: ``list[str] -> array`` sentence embedder for question-passage relevance (None: skip it).
    embed: Embed | None = None
    #: Support threshold; None: the judge's own.
    threshold: float | None = None
    abstain: AbstainRule | None = field(default_factory=AbstainRule)
    quotes: bool = True
    #: Re-cite each sentence to the supportive passages it used (the "use-aware" mode).
    use: PassageUse | None = None
    max_citations: int = 2

    @property
    def support_threshold(self) -> float:
        return float(self.threshold if self.threshold is not None else self.judge.threshold)

    def ground(self, answer: AttributedAnswer) -> AttributedAnswer:
        return self.ground_batch([answer])[0]

    def ground_batch(self, answers: Sequence[AttributedAnswer]) -> list[AttributedAnswer]:
        thr = self.support_threshold
        contents = [[strip_markers(s.text) for s in a.sentences] for a in answers]
        # 1. every (shown passage, sentence) pair, one judge call.
        pairs: list[tuple[str, str]] = []
        where: list[tuple[int, int, int]] = []
        for ai, a in enumerate(answers):
            for si, c in enumerate(contents[ai]):
                if checkable(c):
                    for pi, p in enumerate(a.passages):
                        pairs.append((evidence_text(p), c))
                        where.append((ai, si, pi))
        matrix: dict[tuple[int, int], list[float]] = {}
        for (ai, si, pi), s in zip(where, self.judge.judge(pairs) if pairs else []):
            matrix.setdefault((ai, si), [0.0] * len(answers[ai].passages))[pi] = float(s)
        # 2. use-aware citations: supportive AND used passages.
        if self.use is not None:
            answers = self._cite_by_use(answers, matrix, thr)
        # 3. quotes for supportive citations, one more judge call over passage sub-spans.
        quotes = self._quotes(answers, contents, matrix, thr) if self.quotes else {}
        # 4. relevance of the shown passages to the question.
        relevance = self._relevance(answers)
        out = []
        for ai, a in enumerate(answers):
            sentences = []
            for si, s in enumerate(a.sentences):
                row = matrix.get((ai, si))
                if row is None:
                    sentences.append(s)
                    continue
                cited = [row[n - 1] for n in s.citations if 0 < n <= len(row)]
                support = max(cited, default=0.0)
                sentences.append(replace(s, support=support, quotes=tuple(quotes.get((ai, si), ()))))
            grounded = AttributedAnswer(a.question, a.text, tuple(sentences), a.passages, dict(a.report), a.n_shown)
            out.append(self._decide(grounded, ai, matrix, relevance[ai], thr))
        return out

    # -- use-aware citations -----------------------------------------------------------------

    def _cite_by_use(
        self, answers: Sequence[AttributedAnswer], matrix: dict[tuple[int, int], list[float]], thr: float
    ) -> list[AttributedAnswer]:
        """Per sentence: the supportive passages whose removal costs it >= ``min_drop`` nats,
        most used first; else the most used supportive one; no supportive passage: unchanged."""

        assert self.use is not None
        drops = self.use.drops(answers)
        out = []
        for ai, a in enumerate(answers):
            sentences = list(a.sentences)
            changed = 0
            for si, s in enumerate(a.sentences):
                row, use = matrix.get((ai, si)), drops.get((ai, si))
                if row is None or use is None:
                    continue
                good = [j for j in range(len(row)) if row[j] >= thr]
                if not good:
                    continue
                used = sorted((j for j in good if use[j] >= self.use.min_drop), key=lambda j: (-use[j], j))
                pick = used[: self.max_citations] or [max(good, key=lambda j: (use[j], row[j]))]
                nums = tuple(j + 1 for j in pick)
                if nums != s.citations:
                    changed += 1
                    sentences[si] = replace(
                        s, text=with_markers(strip_markers(s.text), nums), citations=nums, post_hoc=True
                    )
            report = {**a.report, "citation_mode": "use-aware", "use_aware_recited": changed}
            out.append(_recompose(a, sentences, report))
        return out

    # -- quotes ------------------------------------------------------------------------------

    def _quotes(
        self,
        answers: Sequence[AttributedAnswer],
        contents: list[list[str]],
        matrix: dict[tuple[int, int], list[float]],
        thr: float,
    ) -> dict[tuple[int, int], list[Quote]]:
        todo: list[tuple[int, int, int, list[tuple[int, int]]]] = []  # (answer, sentence, n, spans)
        pairs: list[tuple[str, str]] = []
        for (ai, si), row in matrix.items():
            for n in answers[ai].sentences[si].citations:
                if 0 < n <= len(row) and row[n - 1] >= thr:
                    p = answers[ai].passages[n - 1]
                    spans = candidate_spans(p.text)
                    todo.append((ai, si, n, spans))
                    pairs.extend((evidence_text(replace(p, text=p.text[a:b])), contents[ai][si]) for a, b in spans)
        scores = iter(self.judge.judge(pairs) if pairs else [])
        found: dict[tuple[int, int], list[Quote]] = {}
        for ai, si, n, spans in todo:
            p = answers[ai].passages[n - 1]
            scored = [(b - a, -float(next(scores)), a, b) for a, b in spans]
            ok = sorted(x for x in scored if -x[1] >= thr)
            if ok:
                _, neg, a, b = ok[0]
                support = -neg
            else:  # no smaller span supports it: the whole passage does
                a, b, support = 0, len(p.text), matrix[(ai, si)][n - 1]
            found.setdefault((ai, si), []).append(Quote(n, p.start + a, p.start + b, p.text[a:b], support))
        return found

    # -- abstention --------------------------------------------------------------------------

    def _relevance(self, answers: Sequence[AttributedAnswer]) -> list[float | None]:
        if self.embed is None or self.abstain is None:
            return [None] * len(answers)
        import numpy as np

        texts: list[str] = []
        for a in answers:
            texts.append(a.question)
            texts.extend(evidence_text(p) for p in a.passages)
        if not texts:
            return []
        vecs = np.asarray(self.embed(texts), dtype=np.float32)
        vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        out: list[float | None] = []
        pos = 0
        for a in answers:
            q, ps = vecs[pos], vecs[pos + 1 : pos + 1 + len(a.passages)]
            pos += 1 + len(a.passages)
            out.append(float((ps @ q).max()) if len(ps) else -1.0)
        return out

    def _decide(
        self,
        a: AttributedAnswer,
        ai: int,
        matrix: dict[tuple[int, int], list[float]],
        relevance: float | None,
        thr: float,
    ) -> AttributedAnswer:
        rows = [row for (i, _), row in matrix.items() if i == ai]
        best = max((max(r, default=0.0) for r in rows), default=0.0)
        info: dict[str, Any] = {"relevance": relevance, "max_support": best}
        rule = self.abstain
        if rule is None:
            a.report["abstained"] = False
            a.report["abstention"] = {**info, "enabled": False}
            return a
        need = rule.min_support if rule.min_support is not None else thr
        reasons = []
        if relevance is not None and relevance < rule.min_relevance:
            reasons.append(
                f"no shown passage is about the question (relevance {relevance:.2f} < {rule.min_relevance:.2f})"
            )
        if rule.require_support and best < need:
            reasons.append(f"no shown passage supports the answer (best support {best:.2f} < {need:.2f})")
        if not a.passages:
            reasons.append("nothing was retrieved")
        info.update({"min_relevance": rule.min_relevance, "min_support": need if rule.require_support else None})
        if not reasons:
            a.report["abstained"] = False
            a.report["abstention"] = info
            return a
        draft = {"answer": a.text, "sentences": [s.to_dict() for s in a.sentences]}
        report = {**a.report, "abstained": True, "draft": draft, "abstention": {**info, "reasons": reasons}}
        sentence = Sentence(ABSTAIN_TEXT, 0, len(ABSTAIN_TEXT))
        return AttributedAnswer(a.question, ABSTAIN_TEXT, (sentence,), a.passages, report, a.n_shown)


def _recompose(a: AttributedAnswer, sentences: list[Sentence], report: dict[str, Any]) -> AttributedAnswer:
    """``a`` with its sentences' texts replaced, offsets recomputed (gaps kept)."""
    text, out, prev = "", [], 0
    for old, new in zip(a.sentences, sentences):
        text += a.text[prev : old.start]
        prev = old.end
        start = len(text)
        text += new.text
        out.append(replace(new, start=start, end=len(text)))
    text += a.text[prev:]
    return AttributedAnswer(a.question, text, tuple(out), a.passages, report, a.n_shown)


def candidate_spans(text: str) -> list[tuple[int, int]]:
    """Quote candidates inside a passage: each sentence and each pair of adjacent sentences
    (character offsets into ``text``), shortest first. Empty when the passage is one sentence."""
    spans = sentence_spans(text)
    if len(spans) < 2:
        return []
    out = list(spans) + [(spans[i][0], spans[i + 1][1]) for i in range(len(spans) - 1)]
    return sorted(set(out), key=lambda s: (s[1] - s[0], s[0]))


def abstained(answer: AttributedAnswer) -> bool:
    return bool(answer.report.get("abstained"))


def ground_with_pipeline(
    pipe: Any,
    results: Sequence[Any],
    judge: SupportJudge | str = "default",
    *,
    abstain: AbstainRule | None = None,
    quotes: bool = True,
    use_aware: bool = False,
) -> list[Any]:
    """Ground the answers among ``results`` (errors pass through), reading question-passage
    relevance with the pipeline's embedder when it has one (the post-hoc citer's)."""
    if isinstance(judge, str):
        from verifiers.judges import load_judge

        judge = load_judge(judge, generator=pipe.generator)
    embed = getattr(getattr(pipe, "post_hoc", None), "embedder", None)
    use = PassageUse(pipe.generator, getattr(pipe, "prompt", None)) if use_aware else None
    g = Grounder(judge, embed=embed, abstain=abstain, quotes=quotes, use=use)
    idx = [i for i, r in enumerate(results) if isinstance(r, AttributedAnswer)]
    grounded = g.ground_batch([results[i] for i in idx]) if idx else []
    out = list(results)
    for i, a in zip(idx, grounded):
        out[i] = a
    return out
