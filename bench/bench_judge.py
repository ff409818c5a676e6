"""Benchmark of the support judge: quality against human labels and batched throughput.

* Quality: ``citerag judge eval --json`` on AttributionBench (macro-F1 overall and per
  source, at the judge's saved threshold) and binary accuracy on a seeded SNLI-test subset
  (entailment vs not).
* Throughput: the same judge scores the same pairs batched (one ``judge(pairs)`` call) and one
  pair per call (how ALCE's ``eval.py`` calls its NLI model), side by side in this run, on short
  SNLI pairs and on AttributionBench pairs (long evidence, windowed).

Results go to BENCHMARKS.md by hand, with the command line.

    .venv/bin/python bench/bench_judge.py [--judge default] [--snli 1000] [--pairs 128] [--long-pairs 32]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
AB = DATA / "attributionbench" / "dev_all_subset_balanced.jsonl"
SNLI_TEST = DATA / "snli" / "snli_1.0_test.min.jsonl"


def run_eval_cli(judge: str, data: Path) -> tuple[dict, str]:
    # --calibrate also reports the held-out (2-fold) macro-F1 and re-saves the same threshold
    # fitted on this file, which is how the committed judge was calibrated (run from the
    # repository with a relative data path, so the saved card stays the same).
    cmd = [str(ROOT / ".venv" / "bin" / "citerag"), "-q", "judge", "eval", "--data", os.path.relpath(data, ROOT),
           "--judge", judge, "--json", "--calibrate"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return json.loads(out.stdout.strip().splitlines()[-1]), " ".join(["citerag", *cmd[1:]])


def throughput(judge, pairs: list[tuple[str, str]]) -> tuple[float, float]:
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
    ap.add_argument("--judge", default="default")
    ap.add_argument("--snli", type=int, default=1000, help="SNLI test pairs for accuracy (seeded sample)")
    ap.add_argument("--pairs", type=int, default=128, help="short SNLI pairs for the throughput ratio")
    ap.add_argument("--long-pairs", type=int, default=32, help="AttributionBench pairs for the throughput ratio")
    ap.add_argument("--skip-quality", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from verifiers.judge_eval import evaluate_judge
    from verifiers.judge_train import read_pairs
    from verifiers.judges import load_judge

    rows: list[tuple[str, str]] = []
    if not args.skip_quality:
        res, cmd = run_eval_cli(args.judge, AB)
        print(f"$ {cmd}")
        rows.append(("AttributionBench macro-F1 (calibrated in-sample)", f"{res['macro_f1']:.4f}"))
        rows.append(("AttributionBench macro-F1 (held out, 2-fold)", f"{res['held_out_macro_f1']:.4f}"))
        rows.append(("AttributionBench macro-F1 before calibration", f"{res['before_calibration']['macro_f1']:.4f}"))
        rows.append(("AttributionBench accuracy", f"{res['accuracy']:.4f}"))
        rows.append(("threshold", f"{res['threshold']:.4f}"))
        for src, s in res["per_source"].items():
            rows.append((f"  {src} (n={s['n']}) macro-F1 / acc", f"{s['macro_f1']:.4f} / {s['accuracy']:.4f}"))
    judge = load_judge(args.judge)
    if not args.skip_quality:
        snli = read_pairs(SNLI_TEST, max_pairs=args.snli, seed=13)
        r = evaluate_judge(judge, snli)
        rows.append((f"SNLI test binary accuracy (n={r['n']}, entailment vs not)", f"{r['accuracy']:.4f}"))
        rows.append(("SNLI test binary macro-F1", f"{r['macro_f1']:.4f}"))

    short = [(p.evidence, p.claim) for p in read_pairs(SNLI_TEST, max_pairs=args.pairs, seed=7)]
    long_ = [(p.evidence, p.claim) for p in read_pairs(AB, max_pairs=args.long_pairs, seed=7, extra=False)]
    b_s, o_s = throughput(judge, short)
    b_l, o_l = throughput(judge, long_)
    rows.append((f"short pairs/s batched vs one per call (n={len(short)})", f"{b_s:.1f} vs {o_s:.1f}"))
    rows.append((f"AttributionBench pairs/s batched vs one per call (n={len(long_)})", f"{b_l:.1f} vs {o_l:.1f}"))

    width = max(len(k) for k, _ in rows)
    print(f"{'measure':<{width}}  value")
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    print(f"ratios: batched/one-per-call short {b_s / o_s:.1f}x, long {b_l / o_l:.1f}x")


if __name__ == "__main__":
    main()
