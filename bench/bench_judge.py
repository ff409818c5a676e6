"""Benchmark of support judges under the honest protocol, side by side in one run.

For every ``--judge`` (default: the committed one; repeat to compare, e.g. v2 and a v3 candidate):

* AttributionBench dev, split by question (``verifiers.judge_eval.split_of``): every pair is
  scored once; the threshold is fitted on the **selection** half only, and figures are given
  for both halves at that threshold, macro-F1 with a bootstrap 95% interval over questions
  (1,000 resamples, seed 13). Choose judges on the selection column; quote the report column.
  Scored / refused pair counts and the judge's stats (claims split, evidence with
  instructions removed) are printed.
* SNLI test, a seeded subset, binary (entailment vs not): judge-free human labels from
  another distribution, at the same threshold and at 0.5.
* Injection guard (once, no judge needed): the share of real passages in which
  ``verifiers.injection`` finds an instruction — NQ-open gold passages and AttributionBench
  references (false positives: none of them instructs), and the hand-written instruction
  sentences of the tests (true positives).
* Throughput (``--throughput``): batched ``judge(pairs)`` against one pair per call.

Results go to BENCHMARKS.md by hand, with the command line.

    .venv/bin/python bench/bench_judge.py [--judge default] [--judge DIR ...] [--snli 500] [--throughput]
    .venv/bin/python bench/bench_judge.py --skip-quality [--pairs 128] [--long-pairs 24]   # throughput only
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.bench_ask import SHARED_DATA  # noqa: E402

DATA = SHARED_DATA
AB = DATA / "attributionbench" / "dev_all_subset_balanced.jsonl"
SNLI_TEST = DATA / "snli" / "snli_1.0_test.min.jsonl"
NQ = DATA / "nq_open_oracle" / "nq-open-oracle.jsonl.gz"


def injection_rates() -> list[tuple[str, str]]:
    from verifiers.injection import find_instructions

    sys.path.insert(0, str(ROOT / "tests"))
    from test_injection import INSTRUCTIONS, ORDINARY  # the hand-written sentences of the tests

    nq: set[str] = set()
    with gzip.open(NQ, "rt", encoding="utf-8") as fh:
        for line in fh:
            nq.update(c["text"] for c in json.loads(line)["ctxs"] if c.get("isgold"))
    refs: set[str] = set()
    with AB.open(encoding="utf-8") as fh:
        for line in fh:
            refs.update(json.loads(line)["references"])
    rows = []
    for name, texts in (("NQ-open gold passages", nq), ("AttributionBench dev references", refs)):
        hits = [t for t in texts if find_instructions(t)]
        rows.append(
            (f"injection false positives: {name}", f"{len(hits)} / {len(texts)} = {len(hits) / len(texts):.4f}")
        )
        for t in hits[:5]:
            print(f"  flagged in {name}: {[t[a:b] for a, b in find_instructions(t)]}")
    tp = sum(bool(find_instructions(s)) for s in INSTRUCTIONS)
    fp = sum(bool(find_instructions(s)) for s in ORDINARY)
    rows.append(
        (
            "injection: hand-written instructions found / ordinary sentences flagged",
            f"{tp}/{len(INSTRUCTIONS)} / {fp}/{len(ORDINARY)}",
        )
    )
    return rows


def throughput(judge: Any, pairs: list[tuple[str, str]]) -> tuple[float, float]:
    judge.judge(pairs[:2])  # warm up
    t0 = time.perf_counter()
    batched = judge.judge(pairs)
    t_batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    single = [judge.judge([p])[0] for p in pairs]
    t_single = time.perf_counter() - t0
    worst = max(abs(a - b) for a, b in zip(batched, single))
    assert worst < 1e-3, f"batched and single scores differ by {worst}"
    return len(pairs) / t_batched, len(pairs) / t_single


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--judge", action="append", help="default, or a judge folder (repeat to compare)")
    ap.add_argument("--snli", type=int, default=500, help="SNLI test pairs (seeded sample)")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--throughput", action="store_true", help="also batched vs one-per-call pairs/s")
    ap.add_argument("--pairs", type=int, default=128, help="short SNLI pairs for the throughput ratio")
    ap.add_argument("--long-pairs", type=int, default=32, help="AttributionBench pairs for the throughput ratio")
    ap.add_argument("--scores-out", default=None, help="write every judge's AttributionBench scores here (JSON)")
    ap.add_argument("--skip-quality", action="store_true", help="only the throughput ratio (implies --throughput)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    judges = args.judge or ["default"]

    from verifiers.judge_eval import evaluate_judge, evaluate_protocol, load_eval_pairs
    from verifiers.judge_train import read_pairs
    from verifiers.judges import load_judge

    if args.skip_quality:
        judge = load_judge(judges[0])
        short = [(p.evidence, p.claim) for p in read_pairs(SNLI_TEST, max_pairs=args.pairs, seed=7)]
        long_ = [(p.evidence, p.claim) for p in read_pairs(AB, max_pairs=args.long_pairs, seed=7, extra=False)]
        b_s, o_s = throughput(judge, short)
        b_l, o_l = throughput(judge, long_)
        print(f"short pairs/s batched vs one per call (n={len(short)}): {b_s:.1f} vs {o_s:.1f}")
        print(f"AB pairs/s batched vs one per call (n={len(long_)}): {b_l:.1f} vs {o_l:.1f}")
        print(f"ratios: batched/one-per-call short {b_s / o_s:.1f}x, long {b_l / o_l:.1f}x")
        return
    rows: list[tuple[str, ...]] = [("measure", *judges)]
    ab = load_eval_pairs([AB])
    snli = read_pairs(SNLI_TEST, max_pairs=args.snli, seed=13)
    results: dict[str, dict[str, Any]] = {}
    dumped: dict[str, list[float]] = {}
    for name in judges:
        judge = load_judge(name)
        t0 = time.time()
        res = evaluate_protocol(judge, ab, calibrate=True, resamples=args.bootstrap)
        dumped[name] = res.pop("scores")
        t = res["threshold"]
        s_fit = evaluate_judge(judge, snli, threshold=t)
        s_half = evaluate_judge(judge, snli, threshold=0.5)
        res["snli"] = {
            "n": s_fit["n"],
            "accuracy": s_fit["accuracy"],
            "macro_f1": s_fit["macro_f1"],
            "accuracy_at_0.5": s_half["accuracy"],
            "macro_f1_at_0.5": s_half["macro_f1"],
        }
        res["seconds_total"] = round(time.time() - t0, 1)
        results[name] = res
        print(f"# {name}: {json.dumps(res)}", flush=True)

    def col(f: Any) -> list[str]:
        return [f(results[n]) for n in judges]

    def ci(r: dict[str, Any]) -> str:
        return f"{r['macro_f1']:.4f} [{r['macro_f1_ci95'][0]:.3f}, {r['macro_f1_ci95'][1]:.3f}]"

    rows.append(("threshold fitted on the selection half", *col(lambda r: f"{r['threshold']:.4f}")))
    rows.append(
        ("AB selection half: n / questions", *col(lambda r: f"{r['selection']['n']} / {r['selection']['questions']}"))
    )
    rows.append(("AB selection half macro-F1 [95% CI] (in-sample threshold)", *col(lambda r: ci(r["selection"]))))
    rows.append(("AB report half: n / questions", *col(lambda r: f"{r['report']['n']} / {r['report']['questions']}")))
    rows.append(("AB REPORT half macro-F1 [95% CI] (held out)", *col(lambda r: ci(r["report"]))))
    rows.append(("AB report half accuracy", *col(lambda r: f"{r['report']['accuracy']:.4f}")))
    for src in sorted(results[judges[0]]["report"]["per_source"]):
        rows.append(
            (
                f"  report {src} (n={results[judges[0]]['report']['per_source'][src]['n']}) macro-F1",
                *col(lambda r, s=src: f"{r['report']['per_source'][s]['macro_f1']:.4f}"),
            )
        )
    rows.append(("AB pairs scored / refused", *col(lambda r: f"{r['scored']} / {r['refused']}")))
    rows.append(
        (
            "AB claims judged in parts / evidence with instructions removed",
            *col(
                lambda r: (
                    f"{r['judge_stats'].get('claims_split', 0)} / "
                    f"{r['judge_stats'].get('evidence_with_instructions', 0)}"
                )
            ),
        )
    )
    rows.append(
        (
            f"SNLI test binary accuracy / macro-F1 (n={len(snli)}, selection threshold)",
            *col(lambda r: f"{r['snli']['accuracy']:.4f} / {r['snli']['macro_f1']:.4f}"),
        )
    )
    rows.append(
        (
            "SNLI test binary accuracy / macro-F1 at 0.5",
            *col(lambda r: f"{r['snli']['accuracy_at_0.5']:.4f} / {r['snli']['macro_f1_at_0.5']:.4f}"),
        )
    )
    rows.append(("seconds (AB all + SNLI)", *col(lambda r: f"{r['seconds_total']:.0f}")))
    for k, v in injection_rates():
        rows.append((k, v, *[""] * (len(judges) - 1)))
    ratio = ""
    if args.throughput:
        judge = load_judge(judges[0])
        short = [(p.evidence, p.claim) for p in read_pairs(SNLI_TEST, max_pairs=args.pairs, seed=7)]
        long_ = [(p.evidence, p.claim) for p in read_pairs(AB, max_pairs=args.long_pairs, seed=7, extra=False)]
        b_s, o_s = throughput(judge, short)
        b_l, o_l = throughput(judge, long_)
        rows.append((f"short pairs/s batched vs one per call (n={len(short)}, {judges[0]})", f"{b_s:.1f} vs {o_s:.1f}"))
        rows.append((f"AB pairs/s batched vs one per call (n={len(long_)}, {judges[0]})", f"{b_l:.1f} vs {o_l:.1f}"))
        ratio = f"; batched/one-per-call short {b_s / o_s:.1f}x, long {b_l / o_l:.1f}x"
    if args.scores_out:
        Path(args.scores_out).write_text(json.dumps(dumped))

    widths = [max(len(r[i]) if i < len(r) else 0 for r in rows) for i in range(len(judges) + 1)]
    for r in rows:
        print("  ".join(f"{c:<{widths[i]}}" for i, c in enumerate(r)))
    best = max(judges, key=lambda n: results[n]["selection"]["macro_f1"])
    sel = ", ".join(f"{n} {results[n]['selection']['macro_f1']:.4f}" for n in judges)
    print(
        f"chosen on the selection half: {best} ({sel}); its report-half macro-F1 {ci(results[best]['report'])}{ratio}"
    )


if __name__ == "__main__":
    main()
