"""Prompt variants for SmolLM2 on the first 60 NQ-open questions (greedy, deterministic).

A: the shipped prompt (instruction as system message, documents + question as user);
B: instruction after the documents in one user message; C: A plus a one-shot example.
Needs bench/out/nq_index from bench/bench_ask.py.

    .venv/bin/python bench/prompt_variants.py
"""

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from bench_ask import DEFAULT_DATA, has_answer, load  # noqa: E402

import pipeline.prompting as P  # noqa: E402
from pipeline.citations import EmbeddingPostHocCiter  # noqa: E402
from pipeline.generators.vllm_local import VLLMGenerator  # noqa: E402
from pipeline.models import resolve_generator  # noqa: E402
from pipeline.rag import RAGPipeline  # noqa: E402
from pipeline.types import GenerationParams  # noqa: E402
from retrievers.index import load_index  # noqa: E402

corpus, qs, gold = load(DEFAULT_DATA, 60)
idx = load_index(ROOT / "bench" / "out" / "nq_index")
emb = idx.embedder()
ret = idx.retriever("hybrid", embedder=emb)
gen = VLLMGenerator(resolve_generator(None))
orig = P.render
INSTR = P.DEFAULT_INSTRUCTION


def render_B(question, docs, tok, cfg, answer_prefix=""):
    block = "\n".join(P.format_document(n, p) for n, p in docs)
    user = f"{block}\n\n{INSTR}\n\nQuestion: {question}"
    return tok.apply_chat_template([{"role": "user", "content": user}]) + answer_prefix


EX = (
    "Document [1] (Title: Mount Everest): Mount Everest is Earth's highest mountain above sea level, at 8,849 metres.\n"
    "Document [2] (Title: K2): K2 is the second-highest mountain on Earth.\n\nQuestion: how high is mount everest\n"
)


def render_C(question, docs, tok, cfg, answer_prefix=""):
    block = "\n".join(P.format_document(n, p) for n, p in docs)
    msgs = [
        {"role": "system", "content": INSTR},
        {"role": "user", "content": EX},
        {"role": "assistant", "content": "Mount Everest is 8,849 metres high [1]."},
        {"role": "user", "content": f"{block}\n\nQuestion: {question}"},
    ]
    return tok.apply_chat_template(msgs) + answer_prefix


for name, r in [("A", orig), ("B", render_B), ("C", render_C)]:
    P.render = r

    pipe = RAGPipeline(ret, gen, k=5, params=GenerationParams(max_tokens=64), post_hoc=EmbeddingPostHocCiter(emb))
    t = time.time()
    ans = pipe.ask_batch([q["question"] for q in qs], progress=False)
    dt = time.time() - t
    acc = sum(has_answer(a.text, q["answers"]) for a, q in zip(ans, qs)) / len(qs)
    wrote = sum(any(s.citations and not s.post_hoc for s in a.sentences) for a in ans) / len(qs)
    wrote_gold = sum(
        any(a.passages[n - 1].doc_id == g for s in a.sentences if not s.post_hoc for n in s.citations)
        for a, g in zip(ans, gold)
    ) / len(qs)
    cit = sum(g in {a.passages[n - 1].doc_id for n in a.cited_numbers()} for a, g in zip(ans, gold)) / len(qs)
    print(
        f"{name}: acc={acc:.3f} wrote_cit={wrote:.3f} wrote_gold={wrote_gold:.3f} cit_acc={cit:.3f} {dt:.1f}s",
        flush=True,
    )
