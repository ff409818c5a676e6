"""Benchmark of batch `citerag ask --questions` on Ray against the single-process batch.

The same NQ-open questions are answered by the single-process command and by `--ray local`
with 1 and 2 workers, each as a whole command (model and Ray start-up included: what a user
waits for), in the order A B C C B A so a load change on the shared machine hits every
configuration alike. Prints each run's wall time, the ratios of the medians, and whether every
Ray output equals the single-process one (rows compared without their timings).

    OMP_NUM_THREADS=2 HF_HUB_OFFLINE=1 nice -n 5 .venv/bin/python bench/bench_ray.py \
        --data /work/shared/data/nq_open_oracle/nq-open-oracle.jsonl.gz --questions 200
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_ask import DEFAULT_DATA, load  # noqa: E402

CONFIGS = {
    "single": [],
    "ray-1": ["--ray", "local", "--ray-workers", "1"],
    "ray-2": ["--ray", "local", "--ray-workers", "2"],
}


def rows_without_timings(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    for r in rows:
        (r.get("report") or {}).pop("timings", None)
        r.pop("timings", None)
    return rows


def decisions(rows: list[dict]) -> list[tuple]:
    """What a reader sees: the answer, its citations and whether it abstained."""
    return [(r.get("answer"), json.dumps(r.get("citations")), r.get("abstained"), r.get("error")) for r in rows]


def differences(a: object, b: object) -> tuple[int, float]:
    """(fields that differ, the largest difference between two numbers that differ)."""
    if isinstance(a, dict) and isinstance(b, dict):
        parts = [differences(a.get(k), b.get(k)) for k in a.keys() | b.keys()]
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        parts = [differences(x, y) for x, y in zip(a, b)]
    elif a == b:
        return 0, 0.0
    elif isinstance(a, float | int) and isinstance(b, float | int):
        return 1, abs(a - b)
    else:
        return 1, float("inf")
    return sum(n for n, _ in parts), max((d for _, d in parts), default=0.0)


def compare(outputs: dict[str, list[Path]]) -> None:
    """Each run's output against the first single-process run's."""
    reference = rows_without_timings(outputs["single"][0])
    for p in (p for paths in outputs.values() for p in paths):
        rows = rows_without_timings(p)
        n, worst = differences(rows, reference)
        same = decisions(rows) == decisions(reference)
        print(f"{p.name:<16} rows equal: {rows == reference!s:<5} decisions equal: {same!s:<5} "
              f"fields differing: {n} (largest {worst:.2g})")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--index", type=Path, default=Path("/work/main/bench/out/nq_index"))
    ap.add_argument("--questions", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=16, help="--ray-batch-size")
    ap.add_argument("--judge-runtime", default="onnx", help="onnx (fp32) scores do not depend on batch mates")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "ray")
    ap.add_argument("--compare-only", action="store_true", help="compare the outputs already in --out, run nothing")
    ap.add_argument("--once", action="store_true", help="each configuration once (A B C), for a quiet machine")
    args = ap.parse_args()
    if args.compare_only:
        compare({name: sorted(args.out.glob(f"{name}-*.jsonl")) for name in CONFIGS})
        return

    _, questions, _ = load(args.data, args.questions)
    args.out.mkdir(parents=True, exist_ok=True)
    qf = args.out / "questions.jsonl"
    qf.write_text("".join(json.dumps({"id": f"nq{i}", "question": q["question"]}) + "\n"
                          for i, q in enumerate(questions)))  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    order = [*CONFIGS] if args.once else [*CONFIGS, *reversed(CONFIGS)]
    times: dict[str, list[float]] = {name: [] for name in CONFIGS}
    outputs: dict[str, list[Path]] = {name: [] for name in CONFIGS}
    print(f"{len(questions)} questions, index {args.index}, judge runtime {args.judge_runtime}, order {order}")
    for i, name in enumerate(order):
        out = args.out / f"{name}-{i}.jsonl"
        cmd = [sys.executable, "-m", "app.cli", "-q", "--judge-runtime", args.judge_runtime, "ask",
               "--questions", str(qf), "--out", str(out), "--index", str(args.index),
               "--ray-batch-size", str(args.batch_size), *CONFIGS[name]]  # fmt: skip
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        dt = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(f"{name} failed ({proc.returncode}): {proc.stderr[-2000:]}")
        times[name].append(dt)
        outputs[name].append(out)
        print(f"run {i + 1}/{len(order)} {name:<7} {dt:8.1f} s  {proc.stdout.strip()}", flush=True)

    print(f"\n{'config':<8} {'median s':>9} {'s/question':>11}")
    for name in CONFIGS:
        med = statistics.median(times[name])
        print(f"{name:<8} {med:9.1f} {med / len(questions):11.2f}")
    compare(outputs)
    single = statistics.median(times["single"])
    print(
        "ratios (single / ray, >1 means Ray is faster): "
        + ", ".join(f"{name} {single / statistics.median(times[name]):.2f}x" for name in CONFIGS if name != "single")
    )


if __name__ == "__main__":
    main()
