"""Prompt layouts for SmolLM2 on NQ-open SELECTION questions (default 1000-1099), greedy.

Chooses the shipped layout (issue 10, "clean generation"); the first 200 questions stay for
reporting (bench/bench_ask.py). For each layout: share of raw generations that echo the
prompt's format, the same after pipeline.cleaning, answer accuracy (gold string in the cleaned
answer), answers with a model-written valid [n], and gold passage cited (any citation,
post hoc included). Needs bench/out/nq_index (bench/bench_ask.py builds it).

    .venv/bin/python bench/prompt_layouts.py [--start 1000 --n 100] [--layouts A,B,C]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from bench_ask import DEFAULT_DATA, has_answer  # noqa: E402

ECHO = re.compile(
    r"Document\s*\[\d+\]|\(Title:|^\s*(?:Question|Documents?)\s*:|^\s*\[\d+\]\s*[^\n\[\]:]{1,80}:", re.M | re.I
)


def questions(start: int, n: int) -> tuple[list[dict], list[str]]:
    with gzip.open(DEFAULT_DATA, "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh][start : start + n]
    qs, gold = [], []
    for row in rows:
        g = next(c for c in row["ctxs"] if c.get("isgold"))
        qs.append({"question": row["question"], "answers": row["answers"]})
        gold.append(hashlib.sha1((g["title"] + "\n" + g["text"]).encode()).hexdigest()[:12])
    return qs, gold


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--start", type=int, default=1000)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--layouts", default=None)
    ap.add_argument("--max-tokens", type=int, default=64)
    args = ap.parse_args()

    from pipeline.citations import EmbeddingPostHocCiter
    from pipeline.generators.vllm_local import VLLMGenerator
    from pipeline.models import resolve_generator
    from pipeline.prompting import LAYOUTS, PromptConfig
    from pipeline.rag import RAGPipeline
    from pipeline.types import GenerationParams
    from retrievers.index import load_index

    qs, gold = questions(args.start, args.n)
    idx = load_index(ROOT / "bench" / "out" / "nq_index")
    emb = idx.embedder()
    ret = idx.retriever("hybrid", embedder=emb)
    gen = VLLMGenerator(resolve_generator(None))
    names = args.layouts.split(",") if args.layouts else list(LAYOUTS)
    print(f"{len(qs)} selection questions from {args.start}; max_tokens {args.max_tokens}")
    print("| layout | raw echo | echo after cleaning | accuracy | model-written [n] | gold cited | s |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        pipe = RAGPipeline(
            ret,
            gen,
            k=5,
            params=GenerationParams(max_tokens=args.max_tokens),
            prompt=PromptConfig(layout=name),
            post_hoc=EmbeddingPostHocCiter(emb),
        )
        t = time.perf_counter()
        ans = pipe.ask_batch([q["question"] for q in qs], progress=False)
        dt = time.perf_counter() - t
        raw = sum(bool(ECHO.search((a.report.get("cleaned") or {}).get("raw_text", a.text))) for a in ans) / len(qs)
        echo = sum(bool(ECHO.search(a.text)) for a in ans) / len(qs)
        acc = sum(has_answer(a.text, q["answers"]) for a, q in zip(ans, qs)) / len(qs)
        wrote = sum(any(s.citations and not s.post_hoc for s in a.sentences) for a in ans) / len(qs)
        cit = sum(g in {a.passages[n - 1].doc_id for n in a.cited_numbers()} for a, g in zip(ans, gold)) / len(qs)
        print(f"| {name} | {raw:.3f} | {echo:.3f} | {acc:.3f} | {wrote:.3f} | {cit:.3f} | {dt:.0f} |", flush=True)
        with open(ROOT / "bench" / "out" / f"layout_{name}.jsonl", "w") as fh:
            for a in ans:
                fh.write(json.dumps(a.to_dict()) + "\n")
    gen.close()


if __name__ == "__main__":
    main()
