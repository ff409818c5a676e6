"""Benchmark of post-editing corrupted facts (issue 10, item 7) on NQ-open gold passages.

The corpus is every unique NQ-open gold passage, indexed exactly as bench_ask.py does (same
files in bench/out). From those passages we take true sentences that hold a number or a date
(category ``number``) or a person / place name (category ``name``), and make one pair per
sentence: the true sentence, and a copy with ONE value changed (a year moved by 1-9, a decade
by 10-50, a digit of another number changed, or a multi-word name swapped for a name of as
many words from another passage). Each of the
sentences is revised on its own by the real RARR loop (SmolLM2-135M questions through
in-process vLLM, the default judge, the hybrid index); the research (questions, retrieval,
gate) is done once and then settled by each editor side by side:

* ``llm, judge only``: RARR's LLM editor, no contradiction check (the loop before issue 10);
* ``llm``: the LLM editor, with the contradiction check;
* ``aligned``: the evidence-aligned minimal edit alone (no model);
* ``both``: aligned and LLM candidates; an accepted aligned edit wins, else the LLM's (the default rule);
* ``both, best support``: the same candidates, the best accepted by support then preservation.

Sentences are split BY PASSAGE into a selection half (used to choose the default editor and
the aligned editor's overlap threshold) and a report half (the figures to quote, with
bootstrap 95% intervals over sentences). Every figure is judge-free: the revised text is
compared with the known true sentence.

* restored (strict, the headline): revised corrupted sentence == the true sentence, byte for byte;
* value restored (loose): the true and the corrupted value occur (as whole tokens) as often as
  in the true sentence, whatever else changed;
* flagged or restored: restored (strict), or left unchanged and marked unsupported;
* true kept: the revised true sentence is byte-identical to it;
* new errors: edits accepted that do not give back the true sentence (on either copy).

    .venv/bin/python bench/bench_postedit.py [--sentences 60] [--name-share 0.25] [--samples 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_ask import DEFAULT_DATA, load, nq_index  # noqa: E402

OVERLAPS = (0.6, 0.8, 1.0)


@dataclass(frozen=True)
class Pair:
    passage: str  # doc id of the passage the sentence comes from
    category: str  # "number" or "name"
    true: str
    corrupted: str
    old: str  # the true value
    new: str  # the corrupted value
    half: str  # "selection" or "report"


def half_of(doc_id: str) -> str:
    return "selection" if int(hashlib.sha1(doc_id.encode()).hexdigest(), 16) % 2 == 0 else "report"


def good_sentence(s: str) -> bool:
    words = s.split()
    return (
        8 <= len(words) <= 40
        and s[0].isupper()
        and s.endswith(".")
        and not re.search(r"[|\[\]{}=]", s)
        and s.count('"') % 2 == 0
        and s.count("(") == s.count(")")
    )


def corrupt_number(value: str, rng: random.Random) -> str | None:
    """A year moved by 1-9 either way, a decade by 10-50; any other number with one digit
    changed (no leading 0)."""
    if re.fullmatch(r"(1\d{3}|20\d{2})", value):
        return str(int(value) + rng.choice([d for d in range(-9, 10) if d]))
    if re.fullmatch(r"(1\d{2}|20\d)0s", value):  # a decade moves by 10-50 years
        return f"{int(value[:4]) + 10 * rng.choice([-5, -4, -3, -2, -1, 1, 2, 3, 4, 5])}s"
    digits = [i for i, ch in enumerate(value) if ch.isdigit()]
    if not digits:
        return None
    i = rng.choice(digits)
    choices = [d for d in "0123456789" if d != value[i] and not (d == "0" and i == 0)]
    return value[:i] + rng.choice(choices) + value[i + 1 :]


def build_pairs(corpus: list[dict[str, Any]], per_half: int, name_share: float, seed: int) -> list[Pair]:
    from pipeline.citations import sentence_spans
    from verifiers.text import slot_runs, tokenize

    rng = random.Random(seed)
    order = list(corpus)
    rng.shuffle(order)
    names: list[str] = []  # a pool of multi-word names to swap in
    for row in order[:400]:
        toks = tokenize(row["text"])
        names += [
            n
            for i, j, k in slot_runs(toks)
            if k == "name"
            and j - i >= 2
            and i > 0
            and re.fullmatch(r"[\w' -]+", n := row["text"][toks[i].start : toks[j - 1].end])
        ]
    want = {("selection", "name"): round(per_half * name_share), ("report", "name"): round(per_half * name_share)}
    want[("selection", "number")] = per_half - want[("selection", "name")]
    want[("report", "number")] = per_half - want[("report", "name")]
    got: dict[tuple[str, str], list[Pair]] = {k: [] for k in want}
    for row in order:
        half = half_of(row["id"])
        text = row["text"]
        sents = [text[s:e] for s, e in sentence_spans(text)]
        sents = [s for s in sents if good_sentence(s)]
        rng.shuffle(sents)
        for sent in sents:  # at most one sentence per passage
            toks = tokenize(sent)
            runs = slot_runs(toks)
            nums = [(i, j) for i, j, k in runs if k in ("date", "number")]
            nums = [(t.start, t.end) for i, j in nums for t in toks[i:j] if any(ch.isdigit() for ch in t.text)]
            people = [(toks[i].start, toks[j - 1].end) for i, j, k in runs if k == "name" and i > 0 and j - i >= 2]
            cat = "name" if people and len(got[(half, "name")]) < want[(half, "name")] else "number"
            if cat == "number" and (not nums or len(got[(half, "number")]) >= want[(half, "number")]):
                continue
            s, e = rng.choice(people if cat == "name" else nums)
            old = sent[s:e]
            if cat == "name":
                pool = [n for n in names if n not in text and len(n.split()) == len(old.split())]
                new = rng.choice(pool) if pool else None
            else:
                new = corrupt_number(old, rng)
            if not new or new == old:
                continue
            got[(half, cat)].append(Pair(row["id"], cat, sent, sent[:s] + new + sent[e:], old, new, half))
            break
        if all(len(got[k]) >= want[k] for k in want):
            break
    return [p for k in sorted(got) for p in got[k]]


def bootstrap(values: list[float], n: int = 2000, seed: int = 0) -> tuple[float, float]:
    if not values:
        return (float("nan"), float("nan"))
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(values, k=len(values))) / len(values) for _ in range(n))
    return means[int(0.025 * n)], means[int(0.975 * n) - 1]


def count(text: str, value: str) -> int:
    """Occurrences of ``value`` in ``text`` as a whole token (not inside a longer number or word)."""
    return len(re.findall(rf"(?<![\w.,]){re.escape(value)}(?![\w]|[.,]\d)", text))


def outcomes(pairs: list[Pair], results: list[Any]) -> list[dict[str, Any]]:
    """One row per pair: what happened to its corrupted and its true copy."""
    rows = []
    for k, p in enumerate(pairs):
        bad, good = results[2 * k], results[2 * k + 1]
        flagged = bad.revised == p.corrupted and any(not c.supported for c in bad.claims)
        restored = bad.revised == p.true
        value_back = count(bad.revised, p.old) == count(p.true, p.old) and count(bad.revised, p.new) == count(
            p.true, p.new
        )
        edited_bad = bad.revised != p.corrupted
        rows.append(
            {
                "category": p.category,
                "half": p.half,
                "restored": restored,
                "value_restored": value_back,
                "flagged_or_restored": restored or flagged,
                "passed": bad.revised == p.corrupted and not flagged,
                "true_kept": good.revised == p.true,
                "new_errors": int(edited_bad and not restored) + int(good.revised != p.true),
                "editors": [c.editor for c in bad.claims if c.editor],
                "corrupted": p.corrupted,
                "true": p.true,
                "revised_corrupted": bad.revised,
                "revised_true": good.revised,
            }
        )
    return rows


def fmt(values: list[float], ci: bool) -> str:
    m = sum(values) / len(values) if values else float("nan")
    if not ci:
        return f"{m:.3f}"
    lo, hi = bootstrap(values)
    return f"{m:.3f} [{lo:.2f}, {hi:.2f}]"


def table(rows_by_variant: dict[str, list[dict[str, Any]]], half: str, costs: dict[str, float], n_claims: int) -> None:
    ci = half == "report"
    print(f"\n{half} half" + (" (bootstrap 95% intervals over sentences)" if ci else ""))
    print(
        "| editor | category | pairs | restored (strict) | value restored | flagged or restored "
        "| true kept byte-identical | new errors | claims/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, rows in rows_by_variant.items():
        for cat in ("all", "number", "name"):
            sub = [r for r in rows if r["half"] == half and (cat == "all" or r["category"] == cat)]
            if not sub:
                continue
            # The columns of this (editor, category) row, built here rather than by a lambda over the loop's `sub`.
            col = {
                k: [float(r[k]) for r in sub]
                for k in ("restored", "value_restored", "flagged_or_restored", "true_kept")
            }
            speed = f"{n_claims / costs[name]:.2f}" if cat == "all" else ""
            print(
                f"| {name} | {cat} | {len(sub)} | {fmt(col['restored'], ci)} | {fmt(col['value_restored'], ci)} | "
                f"{fmt(col['flagged_or_restored'], ci)} | {fmt(col['true_kept'], ci)} | "
                f"{sum(r['new_errors'] for r in sub)} | {speed} |"
            )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--sentences", type=int, default=60, help="true sentences per half (each gives a corrupted copy)")
    ap.add_argument("--name-share", type=float, default=0.25, help="share of sentences whose corruption is a name")
    ap.add_argument("--samples", type=int, default=3, help="question-generation samples per claim")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--judge", default="default")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = ap.parse_args()

    from pipeline.generators.vllm_local import VLLMGenerator
    from pipeline.models import resolve_generator
    from retrievers.index import load_index
    from verifiers.editor import DEFAULT_EDITOR, AlignedEditor, LLMEditor
    from verifiers.judges import load_judge
    from verifiers.rarr import RARRConfig, build_reviser

    corpus, _, _ = load(args.data, 0)
    index = load_index(nq_index(args.out, corpus))
    retriever = index.retriever("hybrid", embedder=index.embedder())
    judge = load_judge(args.judge)
    pairs = build_pairs(corpus, args.sentences, args.name_share, args.seed)
    texts = [t for p in pairs for t in (p.corrupted, p.true)]
    counts = {
        (h, c): sum(p.half == h and p.category == c for p in pairs)
        for h in ("selection", "report")
        for c in ("number", "name")
    }
    print(
        f"corpus: {len(index.passages)} passages; pairs: {len(pairs)} "
        f"({json.dumps({f'{h}/{c}': n for (h, c), n in counts.items()})}); "
        f"judge: {args.judge} (threshold {judge.threshold:.3f})"
    )

    gen = VLLMGenerator(resolve_generator(None))
    base = build_reviser(retriever, gen, judge, RARRConfig(), samples=args.samples, editor="both")
    llm = LLMEditor(gen)
    revisers = {
        "llm, judge only": replace(base, editor=llm, aligned=None, config=RARRConfig(detect_contradictions=False)),
        "llm": replace(base, editor=llm, aligned=None),
        "aligned": replace(base, editor=None),
        "both": base,
        "both, best support": replace(base, config=RARRConfig(prefer_aligned=False)),
    }
    halves = {h: [p for p in pairs if p.half == h] for h in ("selection", "report")}
    rows_by_variant: dict[str, list[dict[str, Any]]] = {name: [] for name in revisers}
    costs = dict.fromkeys(revisers, 0.0)
    n_claims = 0
    research_by_half = {}
    for half, hp in halves.items():
        texts = [t for p in hp for t in (p.corrupted, p.true)]
        t = time.perf_counter()
        research = base.research_texts(texts)
        research_s = time.perf_counter() - t
        research_by_half[half] = (texts, research)
        n_claims += len(research)
        print(
            f"{half} half: research (questions, retrieval, gate) for {len(research)} claims: {research_s:.1f}s, "
            "shared by every editor"
        )
        for name, rev in revisers.items():
            t = time.perf_counter()
            results = rev.revise_batch(texts, research)
            costs[name] += research_s + time.perf_counter() - t
            rows_by_variant[name] += outcomes(hp, results)
    gen.close()

    # Selection half only: the aligned editor's overlap threshold (no model: settle again).
    sel_texts, sel_research = research_by_half["selection"]
    print("\nselection half: the aligned editor's minimum overlap (contradiction check and edits)")
    print("| min overlap | restored (strict) | flagged or restored | true kept | new errors |\n|---|---|---|---|---|")
    for ov in OVERLAPS:
        rev = replace(base, editor=None, config=RARRConfig(min_overlap=ov), aligned=AlignedEditor(min_overlap=ov))
        rs = outcomes(halves["selection"], rev.revise_batch(sel_texts, sel_research))
        print(
            f"| {ov:.1f} | {fmt([float(r['restored']) for r in rs], False)} | "
            f"{fmt([float(r['flagged_or_restored']) for r in rs], False)} | "
            f"{fmt([float(r['true_kept']) for r in rs], False)} | {sum(r['new_errors'] for r in rs)} |"
        )

    for half in ("selection", "report"):
        table(rows_by_variant, half, costs, n_claims)

    def score(name: str) -> tuple[float, ...]:
        sub = [r for r in rows_by_variant[name] if r["half"] == "selection"]
        mean = lambda key: sum(float(r[key]) for r in sub) / len(sub)  # noqa: E731
        return (
            mean("true_kept") >= 0.95,
            mean("restored"),
            mean("flagged_or_restored"),
            -sum(r["new_errors"] for r in sub),
            -costs[name],
        )

    chosen = max(("llm", "aligned", "both", "both, best support"), key=score)
    print(
        f"\ndefault editor chosen on the selection half: {chosen} "
        f"(verifiers.editor.DEFAULT_EDITOR = {DEFAULT_EDITOR!r})"
    )
    with open(args.out / "postedit_rows.jsonl", "w") as fh:
        for name, rows_ in rows_by_variant.items():
            for r in rows_:
                fh.write(json.dumps({"editor": name, **r}) + "\n")
    rep = {name: [r for r in rows_ if r["half"] == "report"] for name, rows_ in rows_by_variant.items()}
    m = lambda name, key: sum(float(r[key]) for r in rep[name]) / max(len(rep[name]), 1)  # noqa: E731
    print(
        "\nratios (report half, same run): restored both/llm-judge-only = "
        f"{m('both', 'restored'):.3f}/{m('llm, judge only', 'restored'):.3f}; "
        "flagged-or-restored both/llm-judge-only = "
        f"{m('both', 'flagged_or_restored'):.3f}/{m('llm, judge only', 'flagged_or_restored'):.3f}; "
        f"cost aligned/llm = {costs['aligned'] / costs['llm']:.2f}x"
    )


if __name__ == "__main__":
    main()
