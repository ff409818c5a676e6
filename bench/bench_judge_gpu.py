"""The default judge on a CUDA GPU against the CPU runtimes, side by side in one run (issue 13).

``auto`` picks torch on a GPU and ONNX int8 on a CPU (``verifiers.judges.resolve_runtime``).
This bench checks that choice on a machine that has both, on the same inputs:

* which runtime ``load_judge(runtime="auto")`` returns with and without the GPU;
* pairs/s on AttributionBench dev (long evidence) and short SNLI test pairs for torch on the
  GPU (``auto``'s batch, ``verifiers.judges.BATCH_SIZE``, and each of ``--gpu-batches``), and
  for torch and ONNX int8 on the CPU with ``--threads`` threads (the CPU rows see the first
  ``--cpu-limit`` pairs of each set: they are slow, and a rate needs no more);
* whether the GPU's scores are the CPU's: max |score difference| and the share of equal
  decisions on the pairs both scored, and macro-F1 on the selection and report halves of
  AttributionBench dev (``verifiers.judge_eval.split_of``) for the GPU judge.

Needs a CUDA GPU; prints what it measured and exits.

    python bench/bench_judge_gpu.py --data DIR [--threads 16] [--cpu-limit 300]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.bench_ask import SHARED_DATA  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))

from bench_judge_speed import snli_pairs  # noqa: E402


def rate(judge: Any, pairs: list[tuple[str, str]], sync: bool = False) -> tuple[list[float], float]:
    """Scores and pairs/s (wall clock; the GPU synchronised before the clock stops)."""
    import torch

    t = time.perf_counter()
    scores = judge.judge(pairs)
    if sync:
        torch.cuda.synchronize()
    return scores, len(pairs) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=SHARED_DATA)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--cpu-limit", type=int, default=300, help="pairs of each set the CPU runtimes score")
    ap.add_argument("--snli", type=int, default=1000)
    ap.add_argument("--gpu-batches", default="32,256", help="more GPU rows, at these batch sizes")
    ap.add_argument("--ab-limit", type=int, default=None, help="first N AttributionBench dev pairs (default all)")
    ap.add_argument("--device", default="cuda", help="cpu: a dry run of the script itself on a machine without GPU")
    args = ap.parse_args()

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA GPU: this bench compares the GPU judge with the CPU runtimes")
    torch.set_num_threads(args.threads)
    from verifiers.judge_eval import binary_scores, load_eval_pairs, split_of
    from verifiers.judges import CrossEncoderJudge, default_judge_dir, load_judge

    ab = load_eval_pairs([args.data / "attributionbench" / "dev_all_subset_balanced.jsonl"])[: args.ab_limit]
    ab_pairs = [(p.evidence, p.claim) for p in ab]
    snli = snli_pairs(args.data / "snli" / "snli_1.0_test.min.jsonl", args.snli)
    path = str(default_judge_dir())
    gpu_name = torch.cuda.get_device_name(0) if args.device == "cuda" else "dry run on the CPU"
    print(f"{gpu_name}; torch {torch.__version__}; CPU threads {args.threads}")
    print(f"AttributionBench dev {len(ab_pairs)} pairs; SNLI test {len(snli)} pairs; CPU rows: first {args.cpu_limit}")

    auto_gpu = load_judge("default", runtime="auto", device=None if args.device == "cuda" else "cpu")
    auto_cpu = load_judge("default", runtime="auto", device="cpu")
    print(f"auto on the GPU: {type(auto_gpu).__name__} on {getattr(auto_gpu, 'device', '?')}")
    print(f"auto on the CPU: {type(auto_cpu).__name__} ({getattr(auto_cpu, 'variant', 'torch')})")

    judges: dict[str, tuple[Any, bool]] = {
        f"auto: cuda b{auto_gpu.batch_size}": (auto_gpu, True),
        **{
            f"torch cuda b{b}": (CrossEncoderJudge(path, device=args.device, batch_size=int(b)), True)
            for b in args.gpu_batches.split(",")
        },
        f"torch cpu x{args.threads}": (CrossEncoderJudge(path, device="cpu"), False),
        f"onnx-int8 cpu x{args.threads}": (auto_cpu, False),
    }
    scores: dict[tuple[str, str], list[float]] = {}
    rates: dict[tuple[str, str], float] = {}
    for name, (judge, on_gpu) in judges.items():
        judge.judge(ab_pairs[:8] + snli[:8])  # warm-up: allocations, kernel choice
        for set_name, pairs in (("ab", ab_pairs), ("snli", snli)):
            todo = pairs if on_gpu else pairs[: args.cpu_limit]
            scores[name, set_name], rates[name, set_name] = rate(judge, todo, sync=on_gpu and args.device == "cuda")
        print(f"  {name:<22} AB {rates[name, 'ab']:8.1f} pairs/s   SNLI {rates[name, 'snli']:8.1f} pairs/s", flush=True)

    gpu, cpu = f"auto: cuda b{auto_gpu.batch_size}", f"torch cpu x{args.threads}"
    print(f"\nspeed-up of {gpu} over the other rows, same pairs, one run:")
    for other in [n for n in judges if n != gpu]:
        print(
            f"  vs {other:<20} AB {rates[gpu, 'ab'] / rates[other, 'ab']:6.1f}x   "
            f"SNLI {rates[gpu, 'snli'] / rates[other, 'snli']:6.1f}x"
        )
    n = args.cpu_limit
    judge = judges[gpu][0]
    for set_name in ("ab", "snli"):
        a, b = scores[gpu, set_name][:n], scores[cpu, set_name][:n]
        same = sum(x == y for x, y in zip(judge.decide(a), judge.decide(b))) / len(a)
        diff = max(abs(x - y) for x, y in zip(a, b))
        print(
            f"GPU vs CPU torch on {len(a)} {set_name} pairs: "
            f"max |score difference| {diff:.2e}, same decision {same:.3f}"
        )
    labels = [p.label for p in ab]
    halves = [split_of(p) for p in ab]
    preds = judge.decide(scores[gpu, "ab"])
    for h in ("selection", "report"):
        f1 = binary_scores(
            [y for y, g in zip(labels, halves) if g == h], [p for p, g in zip(preds, halves) if g == h]
        ).macro_f1
        print(f"GPU judge macro-F1, AB dev {h} half: {f1:.4f}")


if __name__ == "__main__":
    main()
