"""Judge speed on the CPU, side by side in one run: torch vs ONNX Runtime fp32 vs ONNX int8, dynamic
and static (issue 13).

Same inputs, same thread count (``torch.set_num_threads`` and ORT's intra-op threads both
``--threads``, default 1 so the shared machine stays usable), each judge warmed up first:

* pairs/s on AttributionBench dev (long evidence, several windows per pair; all 1,198 pairs
  unless ``--ab-limit``) and on ``--snli`` short SNLI test pairs (premise, hypothesis);
* chunks of ``--chunk`` pairs go through every runtime in turn (interleaved), so load from
  other users of a shared machine falls on all of them alike;
* ``torch-chars`` (SNLI only): the torch judge batching windows by character length, as
  before issue 13; the token-length sort is the difference, and scores agree to float noise;
* macro-F1 on AttributionBench dev at the judge card's threshold, on the selection half (by
  question, ``verifiers.judge_eval.split_of``) and on the report half, and the share of
  decisions equal to torch's. ``auto``'s CPU choice is made on the **selection** half: the
  fastest runtime whose macro-F1 there is within ``--tolerance`` (0.005) of torch's; the
  report half is the figure to quote. ``--record`` writes the choice into the judge card;
* per runtime, a threshold calibrated on the selection half only and macro-F1 at it on the
  report half (``cal``), to show whether a runtime needs a threshold of its own.

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python bench/bench_judge_speed.py [--data ../shared/data] [--record]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def snli_pairs(path: Path, n: int) -> list[tuple[str, str]]:
    out = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            if row.get("label") in ("entailment", "neutral", "contradiction"):
                out.append((row["premise"], row["hypothesis"]))
            if len(out) >= n:
                break
    return out


def timed(judge: Any, pairs: list[tuple[str, str]]) -> tuple[list[float], float, float, int]:
    """Scores, wall seconds, CPU seconds of this process (one thread: the work itself, whatever
    else the shared machine runs) and windows scored."""
    t, c = time.perf_counter(), time.process_time()
    scores = judge.judge(pairs)
    return scores, time.perf_counter() - t, time.process_time() - c, int(judge.last_stats["windows"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ab-limit", type=int, default=None, help="first N AttributionBench dev pairs (default all)")
    ap.add_argument("--snli", type=int, default=1000)
    ap.add_argument("--chunk", type=int, default=100, help="pairs per interleaved chunk")
    ap.add_argument("--tolerance", type=float, default=0.005)
    ap.add_argument("--record", action="store_true", help="write auto's CPU choice into the default judge card")
    ap.add_argument(
        "--runtimes",
        default="torch-chars,torch,onnx,onnx-int8,onnx-int8-static",
        help="comma-separated; torch is always measured (the reference); NAME@B: an ONNX runtime at batch size B",
    )
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)

    import torch

    torch.set_num_threads(args.threads)
    from verifiers.judge_eval import binary_scores, calibrate_threshold, load_eval_pairs, split_of
    from verifiers.judge_onnx import OnnxCrossEncoderJudge
    from verifiers.judges import CrossEncoderJudge, default_judge_dir, read_card, write_card

    class CharSortJudge(CrossEncoderJudge):
        """The torch judge batching by character length, as before the token-length sort."""

        def pair_length(self, pair: tuple[str, str]) -> int:
            return len(pair[0]) + len(pair[1])

    ab = load_eval_pairs([args.data / "attributionbench" / "dev_all_subset_balanced.jsonl"])[: args.ab_limit]
    ab_pairs = [(p.evidence, p.claim) for p in ab]
    labels = [p.label for p in ab]
    halves = [split_of(p) for p in ab]
    snli = snli_pairs(args.data / "snli" / "snli_1.0_test.min.jsonl", args.snli)
    path = str(default_judge_dir())
    wanted = ["torch", *(n for n in args.runtimes.split(",") if n and n != "torch")]
    judges: dict[str, Any] = {}
    for name in wanted:
        if name == "torch-chars":
            judges[name] = CharSortJudge(path, device="cpu")
        elif name == "torch":
            judges[name] = CrossEncoderJudge(path, device="cpu")
        else:  # the ONNX file is built here if not cached; NAME@B scores B windows per call
            variant, _, batch = name.partition("@")
            kw = {"batch_size": int(batch)} if batch else {}
            judges[name] = OnnxCrossEncoderJudge(path, variant=variant, threads=args.threads, **kw)
    measured = [n for n in judges if n != "torch-chars"]
    threshold = judges["torch"].threshold
    print(
        f"threads {args.threads}; AttributionBench dev {len(ab_pairs)} pairs; SNLI test {len(snli)} pairs; "
        f"threshold {threshold:.4f}; torch {torch.__version__}"
    )
    for judge in judges.values():
        judge.judge(ab_pairs[:8] + snli[:8])  # warm-up: first-call allocations
    # Interleave: every chunk of pairs goes through each runtime in turn, so load from other
    # users of the shared machine falls on all runtimes alike; times add up per runtime.
    ab_scores: dict[str, list[float]] = {n: [] for n in judges}
    snli_scores: dict[str, list[float]] = {n: [] for n in judges}
    # seconds per (runtime, set, clock); clock "wall" or "cpu" (process CPU time: with one
    # thread, the work itself, less sensitive to what else the shared machine runs)
    secs = {(n, d, k): 0.0 for n in judges for d in ("ab", "snli") for k in ("wall", "cpu")}
    windows = dict.fromkeys(judges, 0)
    for lo in range(0, len(ab_pairs), args.chunk):
        for name, judge in judges.items():
            if name == "torch-chars":
                continue  # long windows are all near the maximum length: the sort barely matters there
            scores, wall, cpu, w = timed(judge, ab_pairs[lo : lo + args.chunk])
            ab_scores[name] += scores
            secs[name, "ab", "wall"] += wall
            secs[name, "ab", "cpu"] += cpu
            windows[name] += w
    for lo in range(0, len(snli), args.chunk):
        for name, judge in judges.items():
            scores, wall, cpu, _ = timed(judge, snli[lo : lo + args.chunk])
            snli_scores[name] += scores
            secs[name, "snli", "wall"] += wall
            secs[name, "snli", "cpu"] += cpu
    n_of = {"ab": len(ab_pairs), "snli": len(snli)}

    def rate(name: str, d: str, k: str) -> float:
        return n_of[d] / secs[name, d, k]

    print(f"\n{'runtime':<16} {'AB pairs/s wall':>16} {'cpu':>7} {'SNLI pairs/s wall':>18} {'cpu':>7}")
    for name in judges:
        ab_w = "-" if name == "torch-chars" else f"{rate(name, 'ab', 'wall'):.2f}"
        ab_c = "-" if name == "torch-chars" else f"{rate(name, 'ab', 'cpu'):.2f}"
        print(f"{name:<16} {ab_w:>16} {ab_c:>7} {rate(name, 'snli', 'wall'):18.1f} {rate(name, 'snli', 'cpu'):7.1f}")
    if "torch-chars" in judges:
        diff = max(abs(a - b) for a, b in zip(snli_scores["torch-chars"], snli_scores["torch"]))
        print(
            f"SNLI, token-length vs character-length batching (torch): "
            f"{secs['torch-chars', 'snli', 'wall'] / secs['torch', 'snli', 'wall']:.2f}x wall, "
            f"{secs['torch-chars', 'snli', 'cpu'] / secs['torch', 'snli', 'cpu']:.2f}x cpu, "
            f"max |score difference| {diff:.1e}"
        )

    def half(values: list[Any], h: str) -> list[Any]:
        return [v for v, g in zip(values, halves) if h in (g, "all")]

    rows: dict[str, dict[str, Any]] = {}
    for name in measured:
        preds = judges[name].decide(ab_scores[name])
        f1 = {h: binary_scores(half(labels, h), half(preds, h)).macro_f1 for h in ("all", "selection", "report")}
        # a threshold of its own, fitted on the selection half only; quoted on the report half
        t, _ = calibrate_threshold(half(labels, "selection"), half(ab_scores[name], "selection"))
        rep = binary_scores(half(labels, "report"), [s >= t for s in half(ab_scores[name], "report")]).macro_f1
        rows[name] = dict(scores=ab_scores[name], preds=preds, f1=f1, cal=(t, rep))
    base = rows["torch"]
    print(f"\nAB: {windows['torch']} windows for {len(ab_pairs)} pairs; speed-up over torch, wall / cpu; macro-F1")
    print(
        f"{'runtime':<16} {'AB x':>11} {'SNLI x':>11} {'F1 all':>7} {'F1 sel':>7} {'F1 rep':>7} "
        f"{'dF1 sel':>8} {'dF1 rep':>8} {'agree':>6} {'max |ds|':>9} {'mean |ds|':>9} {'cal t':>7} {'cal F1 rep':>10}"
    )
    for name, r in rows.items():
        agree = sum(a == b for a, b in zip(r["preds"], base["preds"])) / len(ab_pairs)
        diffs = [abs(a - b) for a, b in zip(r["scores"], base["scores"])]
        x = {
            d: f"{secs['torch', d, 'wall'] / secs[name, d, 'wall']:.2f} / "
            f"{secs['torch', d, 'cpu'] / secs[name, d, 'cpu']:.2f}"
            for d in ("ab", "snli")
        }
        print(
            f"{name:<16} {x['ab']:>11} {x['snli']:>11} "
            f"{r['f1']['all']:7.4f} {r['f1']['selection']:7.4f} {r['f1']['report']:7.4f} "
            f"{r['f1']['selection'] - base['f1']['selection']:+8.4f} "
            f"{r['f1']['report'] - base['f1']['report']:+8.4f} "
            f"{agree:6.3f} {max(diffs):9.2e} {sum(diffs) / len(diffs):9.2e} {r['cal'][0]:7.4f} {r['cal'][1]:10.4f}"
        )

    eligible = [n for n in measured if abs(rows[n]["f1"]["selection"] - base["f1"]["selection"]) <= args.tolerance]
    choice = min(eligible, key=lambda n: secs[n, "ab", "cpu"])
    print(
        f"\nauto on a CPU: {choice} (least CPU time on AB dev with selection macro-F1 within {args.tolerance} of torch)"
    )
    if args.record:
        card = read_card(path)
        card["runtime"] = {
            "cpu": choice,
            "decided_by": "bench/bench_judge_speed.py (selection half of AttributionBench dev)",
            "tolerance": args.tolerance,
            "threads": args.threads,
            "selection_macro_f1": {n: round(rows[n]["f1"]["selection"], 4) for n in measured},
            "ab_pairs_per_cpu_s": {n: round(rate(n, "ab", "cpu"), 2) for n in measured},
        }
        write_card(path, card)
        print(f"recorded runtime.cpu = {choice} in {path}")


if __name__ == "__main__":
    main()
