"""Qdrant (embedded local mode) against the folder index (FAISS + bm25s) on the same NQ-open passages.

Both indexes are built from the same corpus file with the same MiniLM vectors (embedded once and
cached, so both stores hold identical vectors). Prints recall@1/@5 for bm25, dense and hybrid
on each store, the retrieval latency per query (one query per call; query vectors are embedded
beforehand, so the figure is the store's search, not MiniLM), and the bytes per passage each
store keeps on disk, then one line of ratios measured side by side in this run.

    .venv/bin/python bench/bench_qdrant.py --data /work/shared/data/nq_open_oracle/nq-open-oracle.jsonl.gz \
        [--questions 1000] [--latency 200]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_ask import DEFAULT_DATA, load  # noqa: E402


class CachedEmbedder:
    """An embedder that remembers each text's vector, so both builds and every timed query
    reuse one MiniLM pass."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.dim = inner.dim  # type: ignore[attr-defined]
        self.cache: dict[str, np.ndarray] = {}

    def __call__(self, texts: list[str]) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if todo:
            for t, v in zip(todo, self.inner(todo)):  # type: ignore[operator]
                self.cache[t] = v
        return np.stack([self.cache[t] for t in texts]) if texts else np.zeros((0, self.dim), np.float32)


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--questions", type=int, default=1000)
    ap.add_argument("--latency", type=int, default=200, help="questions timed one per call")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "qdrant")
    args = ap.parse_args()

    from retrievers.dense import SentenceTransformerEmbedder
    from retrievers.index import build_index, load_index

    corpus, qs, gold = load(args.data, args.questions)
    texts = [q["question"] for q in qs]
    args.out.mkdir(parents=True, exist_ok=True)
    corpus_file = args.out / "nq_corpus.jsonl"
    corpus_file.write_text("".join(json.dumps(r) + "\n" for r in corpus))
    emb = CachedEmbedder(SentenceTransformerEmbedder("all-MiniLM-L6-v2"))

    emb([r["text"] for r in corpus])  # embed the corpus once (a passage is its document's text)
    build_s: dict[str, float] = {}
    dirs = {"faiss+bm25s": args.out / "folder", "qdrant": args.out / "qdrant"}
    for store, d in dirs.items():
        t = time.perf_counter()
        # one passage per document (~100 words), so a gold doc id is its gold passage
        build_index(corpus_file, d, embedder=emb, mode="tokens", size=400, overlap=0, store_kind=store, progress=False)
        build_s[store] = time.perf_counter() - t  # vectors come from the cache: the store's own work
    emb(texts)  # embed the questions once: latency below is the store's search

    print(f"corpus: {len(corpus)} passages; questions: {len(qs)} (latency: first {args.latency}, one per call)")
    print("\n| store | retriever | recall@1 | recall@5 | ms/query (median) | ms/query (p95) |")
    print("|---|---|---|---|---|---|")
    recall5: dict[tuple[str, str], float] = {}
    median: dict[tuple[str, str], float] = {}
    sizes: dict[str, int] = {}
    for store, d in dirs.items():
        with load_index(d) as idx:
            n = len(idx.passages)
            sizes[store] = folder_bytes(idx.data_dir)
            passages_bytes = (idx.data_dir / "passages.jsonl").stat().st_size
            for kind in ("bm25", "dense", "hybrid"):
                r = idx.retriever(kind, embedder=emb)
                res = r.retrieve(texts, 5)
                r1 = sum(g in [p.doc_id for p in ps[:1]] for g, ps in zip(gold, res)) / len(qs)
                r5 = sum(g in [p.doc_id for p in ps[:5]] for g, ps in zip(gold, res)) / len(qs)
                r.retrieve(texts[:5], 5)  # warm up
                times = []
                for q in texts[: args.latency]:
                    t = time.perf_counter()
                    r.retrieve([q], 5)
                    times.append((time.perf_counter() - t) * 1000)
                med, p95 = statistics.median(times), float(np.percentile(times, 95))
                recall5[store, kind], median[store, kind] = r5, med
                print(f"| {store} | {kind} | {r1:.3f} | {r5:.3f} | {med:.2f} | {p95:.2f} |")

    print(
        "\n| store | bytes on disk (version folder) | bytes/passage | of which passages.jsonl | build s |"
        "\n|---|---|---|---|---|"
    )
    for store in dirs:
        per = sizes[store] / n
        print(f"| {store} | {sizes[store]:,} | {per:,.0f} | {passages_bytes / n:,.0f} | {build_s[store]:.1f} |")
    q, f = "qdrant", "faiss+bm25s"
    print(
        f"\nratios (qdrant / faiss+bm25s, same run, cpus={os.cpu_count()}): "
        f"hybrid recall@5 diff {recall5[q, 'hybrid'] - recall5[f, 'hybrid']:+.3f}; "
        + "; ".join(f"{k} latency x{median[q, k] / median[f, k]:.1f}" for k in ("bm25", "dense", "hybrid"))
        + f"; bytes/passage x{sizes[q] / sizes[f]:.2f}"
    )


if __name__ == "__main__":
    main()
