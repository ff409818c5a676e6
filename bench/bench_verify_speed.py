"""`citerag ask --verify` on NQ-open: this tree against an older commit, same inputs, one run.

Each side is the real CLI run as a user runs it (`python -m app.cli ask --questions F --out O
--verify`, default judge and generator) from its own source tree: the older commit is checked
out with `git worktree` into ``bench/out/verify-old-<ref>`` and shares this venv. It prints wall
seconds, the seconds of the verification stage (``report.verification.seconds``), the ratio of
each, and how many answers came out with the same final text and the same sentence statuses
(the judge runtime may differ between the two, so decisions near the threshold can differ).

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_verify_speed.py [--ref db513c2] [--questions 200]
"""

from __future__ import annotations

import argparse
import json
import os
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


def run(tree: Path, questions: Path, index: Path, out: Path) -> tuple[float, list[dict[str, Any]]]:
    env = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "app.cli", "ask", "--index", str(index), "--questions", str(questions),
           "--out", str(out), "--verify"]  # fmt: skip
    t = time.perf_counter()
    subprocess.run(cmd, cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t, [json.loads(line) for line in out.read_text().splitlines()]


def statuses(row: dict[str, Any]) -> list[str]:
    return [s["status"] for s in (row.get("verification") or {}).get("sentences", [])]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref", default="db513c2", help="the older commit")
    ap.add_argument("--questions", type=int, default=200)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = ap.parse_args()

    corpus, rows, _ = load(DEFAULT_DATA, args.questions)
    index = nq_index(args.out, corpus)
    qfile = args.out / f"verify_speed_q{args.questions}.jsonl"
    qfile.write_text("".join(json.dumps({"question": r["question"]}) + "\n" for r in rows))
    old_s, old = run(old_tree(args.ref, args.out), qfile, index, args.out / "verify_speed_old.jsonl")
    new_s, new = run(ROOT, qfile, index, args.out / "verify_speed_new.jsonl")
    old_v = old[0]["verification"]["seconds"]
    new_v = new[0]["verification"]["seconds"]
    same_text = sum(a.get("answer") == b.get("answer") for a, b in zip(old, new))
    same_status = sum(statuses(a) == statuses(b) for a, b in zip(old, new))
    print(f"| questions | {args.ref} wall s | this tree wall s | wall ratio | {args.ref} verify s | this tree verify s "
          "| verify ratio | same final text | same sentence statuses |\n|" + "---|" * 9)  # fmt: skip
    print(
        f"| {len(rows)} | {old_s:.0f} | {new_s:.0f} | **{old_s / new_s:.2f}x** | {old_v:.0f} | {new_v:.0f} "
        f"| **{old_v / new_v:.2f}x** | {same_text}/{len(rows)} | {same_status}/{len(rows)} |"
    )


if __name__ == "__main__":
    main()
