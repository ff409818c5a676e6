"""Levenshtein distance: rapidfuzz (what verifiers.text uses) against the pure-Python
two-row dynamic programme it replaced, side by side in one run on revision-like pairs.

Pairs are sentences of 40-400 characters and an edited copy (a few characters changed, as
RARR's editor changes a year or a name); each round times both implementations on the same
pairs, alternating, and checks that they agree.

    .venv/bin/python bench/bench_levenshtein.py [--pairs 300] [--rounds 5]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from verifiers.text import levenshtein  # noqa: E402


def python_levenshtein(a: str, b: str) -> int:
    """The implementation verifiers.text had before rapidfuzz (kept here as the baseline)."""
    if a == b:
        return 0
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return len(a)
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        cur = [i]
        for j, cb in enumerate(b, start=1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


WORDS = "the bridge opened in 1931 and river is long km tower has four faces of a by was built Sydney".split()


def pairs(n: int, rng: random.Random) -> list[tuple[str, str]]:
    out = []
    for _ in range(n):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 70)))[: rng.randint(40, 400)]
        edited = list(text)
        for _ in range(rng.randint(1, 6)):
            edited[rng.randrange(len(edited))] = rng.choice("0123456789abcXYZ")
        out.append((text, "".join(edited)))
    return out


def time_one(fn, data: list[tuple[str, str]]) -> tuple[float, list[int]]:
    t = time.perf_counter()
    got = [fn(a, b) for a, b in data]
    return time.perf_counter() - t, got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    data = pairs(args.pairs, random.Random(0))
    chars = sum(len(a) for a, _ in data)
    py_t, rf_t = [], []
    for _ in range(args.rounds):
        t_py, d_py = time_one(python_levenshtein, data)
        t_rf, d_rf = time_one(levenshtein, data)
        assert d_py == d_rf, "rapidfuzz and the pure-Python programme disagree"
        py_t.append(t_py)
        rf_t.append(t_rf)
    py, rf = statistics.median(py_t), statistics.median(rf_t)
    print(f"{args.pairs} pairs, {chars / args.pairs:.0f} characters on average, median of {args.rounds} rounds")
    print(f"{'implementation':<16}{'seconds':>10}{'us/pair':>10}")
    print(f"{'pure Python':<16}{py:>10.4f}{py / args.pairs * 1e6:>10.1f}")
    print(f"{'rapidfuzz':<16}{rf:>10.4f}{rf / args.pairs * 1e6:>10.1f}")
    print(f"ratio: rapidfuzz is {py / rf:.0f}x faster than pure Python (distances identical on all pairs)")


if __name__ == "__main__":
    main()
