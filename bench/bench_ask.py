"""Benchmark of `citerag ask` on NQ-open (gold passages pooled as the corpus).

Prints retrieval recall@1/@5 for BM25, dense and hybrid; answer accuracy (a gold answer
string appears in the answer) and citation accuracy (the gold passage is among the cited
ones) for batched vLLM answering; and the throughput of batched `ask` through vLLM against
the same questions answered one at a time with transformers `generate`, measured side by
side in this run. Results go to BENCHMARKS.md by hand, with the command line.

    .venv/bin/python bench/bench_ask.py [--questions 200] [--naive 24] [--data PATH]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import re
import string
import sys
import time
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def find_shared_data() -> Path:
    """The ``shared/data`` folder of the evaluation sets: ``$CITERAG_SHARED_DATA``, else the first
    ``shared/data`` beside the checkout or above it (a ``git worktree`` sits deeper than the clone)."""
    if os.environ.get("CITERAG_SHARED_DATA"):
        return Path(os.environ["CITERAG_SHARED_DATA"])
    for parent in ROOT.parents:
        if (parent / "shared" / "data").is_dir():
            return parent / "shared" / "data"
    return ROOT.parent / "shared" / "data"


SHARED_DATA = find_shared_data()
DEFAULT_DATA = SHARED_DATA / "nq_open_oracle" / "nq-open-oracle.jsonl.gz"


def normalize(s: str) -> str:
    s = unicodedata.normalize("NFKD", s.lower())
    s = "".join(ch for ch in s if ch not in string.punctuation)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def has_answer(text: str, answers: list[str]) -> bool:
    t = normalize(text)
    return any(normalize(a) and normalize(a) in t for a in answers)


def load(data: Path, n: int) -> tuple[list[dict], list[dict], list[str]]:
    """Corpus rows (one per unique gold passage), the first n questions, their gold doc ids."""
    corpus: dict[str, dict] = {}
    questions, gold = [], []
    with gzip.open(data, "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    for row in rows:
        for ctx in row["ctxs"]:
            if ctx.get("isgold"):
                key = hashlib.sha1((ctx["title"] + "\n" + ctx["text"]).encode()).hexdigest()[:12]
                corpus.setdefault(key, {"id": key, "title": ctx["title"], "text": ctx["text"]})
    for row in rows[:n]:
        g = next(c for c in row["ctxs"] if c.get("isgold"))
        questions.append({"question": row["question"], "answers": row["answers"]})
        gold.append(hashlib.sha1((g["title"] + "\n" + g["text"]).encode()).hexdigest()[:12])
    return list(corpus.values()), questions, gold


def nq_index(out: Path, corpus: list[dict], name: str = "nq_index") -> Path:
    """``out/name``: the corpus indexed one passage per document (passages are ~100 words, so a
    gold doc id is its gold passage), rebuilt only when ``out/name.jsonl`` holds another corpus."""
    from retrievers.index import build_index, index_exists

    out.mkdir(parents=True, exist_ok=True)
    corpus_file, index_dir = out / f"{name.replace('nq_index', 'nq_corpus')}.jsonl", out / name
    rows = "".join(json.dumps(r) + "\n" for r in corpus)
    if not index_exists(index_dir) or not corpus_file.is_file() or corpus_file.read_text() != rows:
        corpus_file.write_text(rows)
        build_index(str(corpus_file), str(index_dir), mode="tokens", size=400, overlap=0, progress=False)
    return index_dir


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--questions", type=int, default=200)
    ap.add_argument("--naive", type=int, default=24, help="questions for the side-by-side throughput run")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = ap.parse_args()

    from pipeline.citations import EmbeddingPostHocCiter
    from pipeline.generators.hf import TransformersGenerator
    from pipeline.generators.vllm_local import VLLMGenerator
    from pipeline.models import resolve_generator
    from pipeline.rag import RAGPipeline
    from pipeline.types import GenerationParams
    from retrievers.index import build_index, load_index

    corpus, qs, gold = load(args.data, args.questions)
    args.out.mkdir(parents=True, exist_ok=True)
    corpus_file = args.out / "nq_corpus.jsonl"
    corpus_file.write_text("".join(json.dumps(r) + "\n" for r in corpus))
    index_dir = args.out / "nq_index"
    t = time.perf_counter()
    # Passages are ~100 words: one passage per document, so the gold doc id is the gold passage.
    build_index(str(corpus_file), str(index_dir), mode="tokens", size=400, overlap=0, progress=False)
    index_s = time.perf_counter() - t
    index = load_index(index_dir)
    embedder = index.embedder()
    texts = [q["question"] for q in qs]

    print(f"corpus: {len(corpus)} passages ({len(index.passages)} indexed in {index_s:.1f}s); questions: {len(qs)}")
    print("\n| retriever | recall@1 | recall@5 | s/query |\n|---|---|---|---|")
    retrievers = {}
    for kind in ("bm25", "dense", "hybrid"):
        r = index.retriever(kind, embedder=embedder)
        retrievers[kind] = r
        t = time.perf_counter()
        res = r.retrieve(texts, 5)
        dt = (time.perf_counter() - t) / len(texts)
        r1 = sum(g in [p.doc_id for p in ps[:1]] for g, ps in zip(gold, res)) / len(qs)
        r5 = sum(g in [p.doc_id for p in ps[:5]] for g, ps in zip(gold, res)) / len(qs)
        print(f"| {kind} | {r1:.3f} | {r5:.3f} | {dt * 1000:.1f} ms |")

    model = resolve_generator(None)
    params = GenerationParams(max_tokens=args.max_tokens)
    post_hoc = EmbeddingPostHocCiter(embedder)
    gen = VLLMGenerator(model)
    pipe = RAGPipeline(retrievers["hybrid"], gen, k=5, params=params, post_hoc=post_hoc)
    t = time.perf_counter()
    answers = pipe.ask_batch(texts, progress=False)
    vllm_all_s = time.perf_counter() - t
    acc = sum(has_answer(a.text, q["answers"]) for a, q in zip(answers, qs)) / len(qs)
    cited = [{a.passages[n - 1].doc_id for n in a.cited_numbers()} for a in answers]
    shown = [{p.doc_id for p in a.passages} for a in answers]
    cit_acc = sum(g in c for g, c in zip(gold, cited)) / len(qs)
    cit_acc_shown = sum(g in c for g, c, s in zip(gold, cited, shown) if g in s) / max(
        1, sum(g in s for g, s in zip(gold, shown))
    )
    written = sum(any(not s.post_hoc and s.citations for s in a.sentences) for a in answers) / len(qs)
    post = sum(any(s.post_hoc for s in a.sentences) for a in answers) / len(qs)
    with open(args.out / "nq_answers.jsonl", "w") as fh:
        for a, q, g in zip(answers, qs, gold):
            fh.write(json.dumps({**a.to_dict(), "gold_answers": q["answers"], "gold_doc": g}) + "\n")
    print(
        f"\nanswers (vLLM, hybrid k=5, SmolLM2-135M fp32, max_tokens={args.max_tokens}, "
        f"{len(qs)} questions in {vllm_all_s:.1f}s)"
    )
    print(f"answer accuracy (gold string in answer): {acc:.3f}")
    print(f"citation accuracy (gold passage cited): {cit_acc:.3f}  (when gold was shown: {cit_acc_shown:.3f})")
    print(f"answers with a generator-written citation: {written:.3f}; with a post-hoc citation: {post:.3f}")

    # Side by side: the same first N questions, batched through vLLM vs one at a time with
    # transformers generate (same prompts, same greedy decoding, same token limit).
    sub = texts[: args.naive]
    t = time.perf_counter()
    pipe.ask_batch(sub, progress=False)
    vllm_s = time.perf_counter() - t
    gen.close()
    hf = TransformersGenerator(model, batch_size=1)
    naive = RAGPipeline(retrievers["hybrid"], hf, k=5, params=params, post_hoc=post_hoc, batch_size=1)
    t = time.perf_counter()
    for q in sub:
        naive.ask(q)
    hf_s = time.perf_counter() - t
    print("\n| path | questions | seconds | questions/s |\n|---|---|---|---|")
    print(f"| vLLM batched ask | {len(sub)} | {vllm_s:.1f} | {len(sub) / vllm_s:.2f} |")
    print(f"| transformers generate, one at a time | {len(sub)} | {hf_s:.1f} | {len(sub) / hf_s:.2f} |")
    print(f"\nratio: vLLM batched / transformers one-at-a-time throughput = {hf_s / vllm_s:.1f}x")


if __name__ == "__main__":
    main()
