"""Speculative retrieval for iterative In-Context RALM (RaLMSpec) against the plain loop.

Part 1, the NQ-open corpus (2,600 gold passages, `bench/out/nq_index`): the first
``--questions`` questions, batched, with BM25 and dense retrieval at strides 4 and 8. Both
loops run in this process on one vLLM engine (SmolLM2, greedy), alternating, on the same
inputs, in the order plain, speculative, speculative, plain (seconds are each side's two
runs added up); it prints seconds, the ratio, how many answers are identical (text, citations,
passages; scores within 1e-5), the share of time spent retrieving, and the speculation counts.

Part 2, a retrieval-bound case (``--pad N``): the dense index gets N extra vectors, scaled to
length 0.05 so that they never outrank a real passage (checked: none is ever retrieved) but
are searched exactly like real ones, as an exact search over an N-passage corpus would be.
Questions are answered one at a time (``--latency-questions``), as a user waits for one.

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_speculative.py [--questions 100] [--pad 2000000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_ask import DEFAULT_DATA, load, nq_index  # noqa: E402


class Timed:
    """A retriever wrapper that adds up the seconds spent in ``retrieve`` and ``retrieve_from``."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.seconds = inner, 0.0
        self.prefix_stable = getattr(inner, "prefix_stable", False)
        if hasattr(inner, "retrieve_from"):
            self.retrieve_from = self._timed(inner.retrieve_from)

    def _timed(self, fn: Any) -> Any:
        def run(*a: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*a)
            finally:
                self.seconds += time.perf_counter() - t

        return run

    def retrieve(self, queries: Any, k: int) -> Any:
        return self._timed(self.inner.retrieve)(queries, k)


def same(a: Any, b: Any) -> bool:
    da, db = a.to_dict(), b.to_dict()
    for d in (da, db):
        for key in ("timings", "rounds", "speculation"):
            d.pop(key, None)
    sa, sb = ([p.pop("score") for p in d["passages"]] for d in (da, db))
    return da == db and len(sa) == len(sb) and all(abs(x - y) <= 1e-5 for x, y in zip(sa, sb))


def run(retriever: Any, gen: Any, questions: list[str], stride: int, speculative: bool, batch: int, max_tokens: int):
    from pipeline.rag import IterativeConfig, RAGPipeline
    from pipeline.types import GenerationParams

    timed = Timed(retriever)
    llm = getattr(gen, "_llm", None)
    if llm is not None:  # no run may reuse the KV blocks of the previous run's prompts
        llm.reset_prefix_cache()
    pipe = RAGPipeline(
        timed,
        gen,
        k=5,
        iterative=IterativeConfig(stride=stride, query_tokens=32, speculative=speculative),
        params=GenerationParams(max_tokens=max_tokens),
        citations="post-hoc",
    )
    t = time.perf_counter()
    answers = []
    for i in range(0, len(questions), batch):
        answers += pipe.ask_batch(questions[i : i + batch], progress=False)
    return answers, time.perf_counter() - t, timed.seconds


def padded_dense(dense: Any, n: int, seed: int = 0) -> Any:
    """``dense`` with ``n`` extra vectors of length 0.05 (searched, never retrieved)."""
    import faiss
    import numpy as np

    from pipeline.types import Passage
    from retrievers.dense import DenseRetriever

    index = faiss.IndexFlatIP(dense.dim)
    index.add(np.stack([dense.index.reconstruct(i) for i in range(dense.index.ntotal)]))
    rng = np.random.default_rng(seed)
    for start in range(0, n, 200_000):
        x = rng.standard_normal((min(200_000, n - start), dense.dim)).astype("float32")
        index.add(0.05 * x / np.linalg.norm(x, axis=1, keepdims=True))
    pad = [Passage(f"__pad{i}", "", "", 0.0, 0, 0) for i in range(n)]
    return DenseRetriever(list(dense.passages) + pad, dense.embedder, index)


def pair(retriever: Any, gen: Any, qs: list[str], stride: int, batch: int, max_tokens: int) -> tuple[tuple, tuple]:
    """Plain and speculative runs in the order plain, speculative, speculative, plain; each
    side's seconds are the sum of its two runs (so drift in the machine's load cancels out)."""
    p1 = run(retriever, gen, qs, stride, False, batch, max_tokens)
    s1 = run(retriever, gen, qs, stride, True, batch, max_tokens)
    s2 = run(retriever, gen, qs, stride, True, batch, max_tokens)
    p2 = run(retriever, gen, qs, stride, False, batch, max_tokens)
    return (p1[0], p1[1] + p2[1], p1[2] + p2[2]), (s1[0], s1[1] + s2[1], s1[2] + s2[2])


def summary(label: str, plain: tuple, spec: tuple) -> str:
    (pa, pt, pr), (sa, st, sr) = plain, spec
    ident = sum(same(a, b) for a, b in zip(pa, sa))
    sp = sa[0].report["speculation"]
    guessed = sp["speculated"]
    acc = sp["accepted"] / guessed if guessed else 0.0
    return (
        f"| {label} | {pt:.1f} | {st:.1f} | **{pt / st:.2f}x** | {ident}/{len(pa)} | {pr / pt:.1%} | {sr / st:.1%} "
        f"| {sp['retrieve_calls']} | {guessed} | {acc:.2f} | {sp['rollbacks']} | {sp['wasted_rounds']} "
        f"| {sp['plain_rounds']} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--questions", type=int, default=100)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--strides", default="4,8")
    ap.add_argument("--retrievers", default="bm25,dense")
    ap.add_argument("--pad", type=int, default=0, help="extra dense vectors for the retrieval-bound case")
    ap.add_argument("--latency-questions", type=int, default=10)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = ap.parse_args()

    from pipeline.generators import make_generator
    from retrievers.index import load_index

    corpus, rows, _ = load(DEFAULT_DATA, args.questions)
    questions = [r["question"] for r in rows]
    index = load_index(nq_index(args.out, corpus))
    gen = make_generator("vllm", None)
    head = (
        "| case | plain s | speculative s | speed-up | identical | retrieval share, plain | retrieval share, spec. "
        "| retrieval calls (spec.) | guessed rounds | accepted | rollbacks | wasted rounds | real rounds (spec.) |\n|"
        + "---|"
        * 13
    )
    lines = [head]
    run(index.retriever("bm25"), gen, questions[:2], 4, False, len(questions), args.max_tokens)  # warm-up
    for kind in args.retrievers.split(","):
        retriever = index.retriever(kind)
        for stride in (int(s) for s in args.strides.split(",")):
            plain, spec = pair(retriever, gen, questions, stride, len(questions), args.max_tokens)
            lines.append(summary(f"{kind}, stride {stride}, batch of {len(questions)}", plain, spec))
            print(lines[-1], flush=True)
    if args.pad:
        big = padded_dense(index.retriever("dense"), args.pad)
        qs = questions[: args.latency_questions]
        for stride in (int(s) for s in args.strides.split(",")):
            plain, spec = pair(big, gen, qs, stride, 1, args.max_tokens)
            hits = sum(p.doc_id.startswith("__pad") for a in plain[0] + spec[0] for p in a.passages)
            assert hits == 0, f"{hits} padding vectors were retrieved"
            n = len(big.passages)
            label = f"dense exact over {n:,} vectors, stride {stride}, one question at a time"
            lines.append(summary(label, plain, spec))
            print(lines[-1], flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
