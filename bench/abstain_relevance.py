"""The retrieval half of the abstention rule, without generation: the best cosine between a
question and its shown passages (hybrid k=5), on NQ-open questions answered from the full
index (answerable) and from the index without their gold passages (unanswerable).

Chooses ``min_relevance`` on the selection questions (1000..1099; answerable abstention at
most 0.08, then the most unanswerable abstention) and reports both rates on the first 200
questions with bootstrap 95% intervals. Indexes come from bench/bench_trust.py (built if absent).

    .venv/bin/python bench/abstain_relevance.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from bench_trust import corpus_of, doc_key, ensure_index, fmt, load_rows  # noqa: E402


def relevance(index_dir: Path, questions: list[str]) -> list[float]:
    import numpy as np

    from retrievers.index import load_index
    from verifiers.evidence import evidence_text

    idx = load_index(index_dir)
    emb = idx.embedder()
    shown = idx.retriever("hybrid", embedder=emb).retrieve(questions, 5)
    out = []
    for q, ps in zip(questions, shown):
        v = np.asarray(emb([q] + [evidence_text(p) for p in ps]), dtype=np.float32)
        v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        out.append(float((v[1:] @ v[0]).max()))
    return out


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", default="selection,report", help="which question sets to score (comma-separated)")
    args = ap.parse_args()
    rows = load_rows()
    full = ensure_index("nq_index", corpus_of(rows))
    sets = {k: v for k, v in {"selection": rows[1000:1100], "report": rows[:200]}.items() if k in args.sets.split(",")}
    names = {"selection": "sel1000_100", "report": "rep200"}
    rel = {}
    for name, sub in sets.items():
        gold = {doc_key(next(c for c in r["ctxs"] if c.get("isgold"))) for r in sub}
        minus = ensure_index(f"nq_index_minus_{names[name]}", corpus_of(rows, gold))
        qs = [r["question"] for r in sub]
        rel[name] = (relevance(full, qs), relevance(minus, qs))
    ans, un = rel["selection"]
    best = None
    print("| min_relevance | selection: abstain unanswerable | abstain answerable |\n|---|---|---|")
    for i in range(41):
        r = round(0.10 + 0.0125 * i, 4)
        a = sum(x < r for x in ans) / len(ans)
        u = sum(x < r for x in un) / len(un)
        if a <= 0.08 and (best is None or u > best[1]):
            best = (r, u, a)
        if i % 4 == 0:
            print(f"| {r:.3f} | {u:.3f} | {a:.3f} |")
    r = best[0]
    print(
        f"\nchosen on the selection questions: min_relevance={r} (unanswerable {best[1]:.3f}, answerable {best[2]:.3f})"
    )
    if "report" not in rel:
        return
    ans, un = rel["report"]
    print(
        f"report (first 200): abstain on unanswerable {fmt([float(x < r) for x in un])}, "
        f"on answerable {fmt([float(x < r) for x in ans])}"
    )


if __name__ == "__main__":
    main()
