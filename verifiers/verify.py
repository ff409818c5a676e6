"""``ask --verify``: check every sentence of an answer against its citations, and repair.

For each sentence (markers stripped) the judge scores every passage shown to the generator,
in one batch for all answers. Then, per sentence:

* ``supported``: a cited passage supports it (support >= threshold): left byte-identical;
* ``recited``: no cited passage does, but other shown passages do: its markers are replaced
  by the supporting ones (the words are kept);
* otherwise the sentence goes through the RARR loop against the index (its cited passages
  join the evidence pool): ``kept`` (evidence from the index supports it as written; it is
  cited to that evidence, which is added to the answer's passages after the shown ones, with
  ``shown: false``: a number above ``n_shown`` never names a passage the generator saw), ``edited`` (an accepted
  edit, cited), ``marked`` (left as written, flagged unsupported) or ``removed``.

Every sentence then carries ``support`` (the best support of its text by its final
citations, 0 without any) and ``revised`` (its words were edited or it was removed).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from pipeline.citations import strip_markers, with_markers
from pipeline.protocols import SupportJudge
from pipeline.types import AttributedAnswer, Passage, Sentence, SentenceVerdict
from verifiers.claims import checkable
from verifiers.evidence import evidence_text
from verifiers.rarr import ClaimCheck, RARRReviser

log = logging.getLogger(__name__)


def verify_answer(
    answer: AttributedAnswer,
    judge: SupportJudge,
    reviser: RARRReviser | None = None,
    *,
    threshold: float | None = None,
    max_citations: int = 2,
) -> AttributedAnswer:
    """``answer`` with every sentence judged against its citations and repaired when needed."""
    return verify_answers([answer], judge, reviser, threshold=threshold, max_citations=max_citations)[0]


def verify_answers(
    answers: Sequence[AttributedAnswer],
    judge: SupportJudge,
    reviser: RARRReviser | None = None,
    *,
    threshold: float | None = None,
    max_citations: int = 2,
) -> list[AttributedAnswer]:
    """Batched :func:`verify_answer`: one judge call for all answers, one RARR pass."""
    t0 = time.perf_counter()
    thr = threshold if threshold is not None else float(judge.threshold)
    contents = [[strip_markers(s.text) for s in a.sentences] for a in answers]
    words = [[checkable(c) for c in cs] for cs in contents]
    pairs, where = [], []
    for ai, a in enumerate(answers):
        for si, c in enumerate(contents[ai]):
            if words[ai][si]:
                for pi, p in enumerate(a.passages):
                    pairs.append((evidence_text(p), c))
                    where.append((ai, si, pi))
    scores: dict[tuple[int, int], list[float]] = {}
    for (ai, si, pi), s in zip(where, judge.judge(pairs) if pairs else []):
        scores.setdefault((ai, si), [0.0] * len(answers[ai].passages))[pi] = float(s)

    # Decide supported / recited; collect the rest for RARR.
    plans: dict[tuple[int, int], SentenceVerdict] = {}
    rarr_keys: list[tuple[int, int]] = []
    for ai, a in enumerate(answers):
        for si, s in enumerate(a.sentences):
            if not words[ai][si]:
                continue
            row = scores.get((ai, si), [])
            cited = max((row[n - 1] for n in s.citations if 0 < n <= len(row)), default=0.0)
            ranked = sorted(range(len(row)), key=lambda j: (-row[j], j))
            good = [j for j in ranked if row[j] >= thr][:max_citations]
            if s.citations and cited >= thr:
                plans[(ai, si)] = SentenceVerdict("supported", cited, cited)
            elif good:
                plans[(ai, si)] = SentenceVerdict("recited", row[good[0]], cited, tuple(j + 1 for j in good))
            else:
                plans[(ai, si)] = SentenceVerdict("rarr", cited, cited)
                rarr_keys.append((ai, si))

    checks: dict[tuple[int, int], ClaimCheck] = {}
    if reviser is not None and rarr_keys:
        claims = [contents[ai][si] for ai, si in rarr_keys]
        cited_ps = [[answers[ai].passages[n - 1] for n in answers[ai].sentences[si].citations] for ai, si in rarr_keys]
        for key, chk in zip(rarr_keys, reviser.check(claims, cited_ps)):
            checks[key] = chk
    dt = time.perf_counter() - t0
    return [_rebuild(a, ai, plans, checks, thr, dt) for ai, a in enumerate(answers)]


def _rebuild(
    a: AttributedAnswer,
    ai: int,
    plans: dict[tuple[int, int], SentenceVerdict],
    checks: dict[tuple[int, int], ClaimCheck],
    thr: float,
    seconds: float,
) -> AttributedAnswer:
    passages = list(a.passages)
    number = {p.key: n for n, p in enumerate(passages, start=1)}

    def number_of(p: Passage) -> int:
        if p.key not in number:
            passages.append(p)
            number[p.key] = len(passages)
        return number[p.key]

    pieces: list[tuple[str, Sentence] | None] = []  # (gap before, sentence) or None when removed
    details: list[dict[str, Any]] = []
    prev_end = 0
    for si, s in enumerate(a.sentences):
        gap = a.text[prev_end : s.start] if pieces else ""
        prev_end = s.end
        plan = plans.get((ai, si))
        if plan is None:  # nothing to check (a stray marker or symbol)
            pieces.append((gap, replace(s, support=0.0, revised=False)))
            continue
        status, support, revised = plan.status, float(plan.support), False
        text, nums, post_hoc = s.text, s.citations, s.post_hoc
        extra: dict[str, Any] = {}
        if status == "recited":
            nums = plan.numbers
            text, post_hoc = with_markers(strip_markers(s.text), nums), True
        elif status == "rarr":
            chk = checks.get((ai, si))
            if chk is None:
                status = "unsupported"
            else:
                status = chk.status
                extra = {"rarr": chk.report()}
                if chk.status in ("kept", "edited"):
                    nums = tuple(number_of(p) for p, _ in chk.citations)
                    body = chk.final if chk.final is not None else strip_markers(s.text)
                    text, support, post_hoc = with_markers(body, nums), chk.support, True
                    revised = chk.status == "edited"
                elif chk.status == "removed":
                    revised = True
        details.append(
            {
                "index": si,
                "original_text": s.text,
                "text": None if status == "removed" else text,
                "status": status,
                "support_before": float(plan.before),
                "support": support,
                "supported": status in ("supported", "recited", "kept", "edited"),
                "revised": revised,
                **extra,
            }
        )
        if status == "removed":
            pieces.append(None)
            continue
        pieces.append((gap, Sentence(text, 0, 0, nums, post_hoc, s.dropped, support, revised)))

    out_text, sentences = "", []
    for piece in pieces:
        if piece is None:
            continue
        gap, s = piece
        gap = gap if out_text else ""
        if out_text and not gap:
            gap = " "
        out_text += gap
        start = len(out_text)
        out_text += s.text
        sentences.append(replace(s, start=start, end=len(out_text)))
    before = [d for d in details]
    report = dict(a.report)
    report["verification"] = {
        "threshold": thr,
        "sentences": details,
        "supported_before": sum(d["support_before"] >= thr for d in before),
        "supported_after": sum(d["supported"] for d in details if d["status"] != "removed"),
        "checked": len(details),
        "added_passages": [p.to_dict() for p in passages[len(a.passages) :]],
        "seconds": seconds,
    }
    n_shown = a.n_shown if a.n_shown is not None else len(a.passages)
    return AttributedAnswer(a.question, out_text, tuple(sentences), tuple(passages), report, n_shown)


def verify_with_pipeline(pipe: Any, results: Sequence[Any], judge: SupportJudge | str = "default") -> list[Any]:
    """``ask --verify``: verify the answers among ``results`` (errors pass through) with the
    pipeline's own retriever and generator driving the RARR loop."""
    from verifiers.rarr import build_reviser

    if isinstance(judge, str):
        from verifiers.judges import load_judge

        judge = load_judge(judge, generator=pipe.generator)
    reviser = build_reviser(pipe.retriever, pipe.generator, judge)
    idx = [i for i, r in enumerate(results) if isinstance(r, AttributedAnswer)]
    verified = verify_answers([results[i] for i in idx], judge, reviser)
    out = list(results)
    for i, v in zip(idx, verified):
        out[i] = v
    return out
