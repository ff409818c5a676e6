"""`citerag ask --verify` on NQ-open: this tree against an older commit, same inputs, one run.

Each side is the real CLI run as a user runs it (`python -m app.cli ask --questions F --out O
--verify`, default judge and generator) from its own source tree: the older commit is checked
out with `git worktree` into ``bench/out/verify-old-<ref>`` and shares this venv. It prints wall
seconds, the seconds of the verification stage (``report.verification.seconds``), the ratio of
each, and how many answers came out with the same final text and the same sentence statuses
(the judge runtime may differ between the two, so decisions near the threshold can differ),
and how many are identical in every field but the timings. It also prints the CPU seconds of
each CLI process (user + system, from ``getrusage``) and the load average before and after,
since a shared machine stretches wall time.

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_verify_speed.py [--ref db513c2] [--questions 200] \
        [--data nq-open-oracle.jsonl.gz] [--index bench/out/nq_index] [--new-first]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_ask import DEFAULT_DATA, load, nq_index  # noqa: E402


def old_tree(ref: str, out: Path) -> Path:
    """A checkout of ``ref`` (made once with ``git worktree``), sharing this venv."""
    tree = out / f"verify-old-{ref}"
    if not (tree / "app" / "cli.py").is_file():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), ref], check=True)
    return tree


def cpu_of_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(tree: Path, questions: Path, index: Path, out: Path) -> tuple[float, float, list[dict[str, Any]]]:
    """Wall seconds, CPU seconds and the answers of one ``ask --verify`` run from ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "app.cli", "ask", "--index", str(index), "--questions", str(questions),
           "--out", str(out), "--verify"]  # fmt: skip
    t, c = time.perf_counter(), cpu_of_children()
    subprocess.run(cmd, cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL)
    wall, cpu = time.perf_counter() - t, cpu_of_children() - c
    return wall, cpu, [json.loads(line) for line in out.read_text().splitlines()]


TIMING_KEYS = frozenset({"timings", "seconds"})


def without_timings(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: without_timings(v) for k, v in x.items() if k not in TIMING_KEYS}
    if isinstance(x, list):
        return [without_timings(v) for v in x]
    return x


def statuses(row: dict[str, Any]) -> list[str]:
    return [s["status"] for s in (row.get("verification") or {}).get("sentences", [])]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref", default="db513c2", help="the older commit")
    ap.add_argument("--questions", type=int, default=200)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="NQ-open oracle JSONL (.gz)")
    ap.add_argument("--index", type=Path, help="an NQ index already built (default: build one under --out)")
    ap.add_argument("--new-first", action="store_true", help="run this tree first (default: the older commit)")
    args = ap.parse_args()
    args.out = args.out.resolve()  # each CLI runs from its own tree

    corpus, rows, _ = load(args.data, args.questions)
    index = args.index.resolve() if args.index else nq_index(args.out, corpus)
    qfile = args.out / f"verify_speed_q{args.questions}.jsonl"
    qfile.write_text("".join(json.dumps({"question": r["question"]}) + "\n" for r in rows))
    sides = {"old": old_tree(args.ref, args.out), "new": ROOT}
    runs: dict[str, tuple[float, float, list[dict[str, Any]]]] = {}
    load0 = os.getloadavg()[0]
    for side in ("new", "old") if args.new_first else ("old", "new"):
        runs[side] = run(sides[side], qfile, index, args.out / f"verify_speed_{side}.jsonl")
    load1 = os.getloadavg()[0]
    (old_s, old_cpu, old), (new_s, new_cpu, new) = runs["old"], runs["new"]
    old_v = old[0]["verification"]["seconds"]
    new_v = new[0]["verification"]["seconds"]
    same_text = sum(a.get("answer") == b.get("answer") for a, b in zip(old, new))
    same_status = sum(statuses(a) == statuses(b) for a, b in zip(old, new))
    identical = sum(without_timings(a) == without_timings(b) for a, b in zip(old, new))
    n = len(rows)
    print(f"| questions | {args.ref} wall s | this tree wall s | wall ratio | {args.ref} verify s | this tree verify s "
          f"| verify ratio | {args.ref} CPU s | this tree CPU s | CPU ratio | same final text | same sentence statuses "
          "| identical rows |\n|" + "---|" * 13)  # fmt: skip
    print(
        f"| {n} | {old_s:.0f} | {new_s:.0f} | **{old_s / new_s:.2f}x** | {old_v:.0f} | {new_v:.0f} "
        f"| **{old_v / new_v:.2f}x** | {old_cpu:.0f} | {new_cpu:.0f} | {old_cpu / new_cpu:.2f}x "
        f"| {same_text}/{n} | {same_status}/{n} | {identical}/{n} |"
    )
    print(f"load average (1 min): {load0:.1f} before, {load1:.1f} after; {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
