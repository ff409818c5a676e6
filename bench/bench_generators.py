"""Second generator: SmolLM2-135M-Instruct (chat prompt as shipped) against Gemma 3 270M
(base model, few-shot completion prompt), side by side through the same in-process vLLM
path (fp32, greedy), on NQ-open with the gold passages pooled as the corpus, hybrid k=5.

In-Context RALM for a base LM: two worked examples (numbered documents, a question and an
answer that ends with its document number), then the target documents and question; the
answer is read up to the end of its line (stop at "\\n").

Splits, by question: prompt details are chosen on questions 1000-1059 (``--split select``
runs every few-shot variant there); figures are reported on the first 200 questions
(``--split report`` runs SmolLM2 as shipped, Gemma with ``--variant`` and, for reference,
Gemma with the shipped prompt, which is what ``--model gemma3-270m`` gets today).

Metrics: answer accuracy (a gold answer string in the answer) with a bootstrap 95%
interval, and the paired bootstrap interval of the accuracy difference; share of answers
echoing the prompt format ("Document [", "(Title:", "Question:"); share with a model-written
valid [n]; gold passage cited by a model-written [n] (judge-free); gold passage cited after
post-hoc citing (as bench_ask.py); generated tokens/s and seconds per question of the
batched generate call; mean prompt tokens.

    nice -n 15 .venv/bin/python bench/bench_generators.py --split select
    nice -n 15 .venv/bin/python bench/bench_generators.py --split report --variant short
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_ask import DEFAULT_DATA, has_answer, load, nq_index  # noqa: E402

from pipeline.errors import ContextBudgetError  # noqa: E402
from pipeline.prompting import BuiltPrompt, format_document, truncate_passage, validate_question  # noqa: E402
from pipeline.rag import RAGPipeline  # noqa: E402
from pipeline.types import Generation, GenerationParams, Passage  # noqa: E402

ECHO_MARKS = ("Document [", "(Title:", "Question:")
SELECT = (1000, 1060)

# Two worked examples written for this benchmark (facts from general knowledge, not NQ).
_EXAMPLES: list[tuple[list[tuple[str, str]], str, dict[str, str]]] = [
    (
        [
            (
                "Eiffel Tower",
                "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris. "
                "It was built by Gustave Eiffel's company as the entrance arch of the 1889 World's Fair.",
            ),
            (
                "Statue of Liberty",
                "The Statue of Liberty is a copper statue on Liberty Island in New York Harbor. "
                "It was a gift from the people of France and was dedicated on October 28, 1886.",
            ),
        ],
        "when was the statue of liberty dedicated",
        {"short": "October 28, 1886 [2]", "sentence": "The Statue of Liberty was dedicated on October 28, 1886 [2]."},
    ),
    (
        [
            (
                "Amazon River",
                "The Amazon River in South America is the largest river in the world by discharge. "
                "It flows east through Peru, Colombia and Brazil into the Atlantic Ocean.",
            ),
            (
                "Nile",
                "The Nile is a major river in northeastern Africa that flows north into the Mediterranean "
                "Sea. It has long been considered the longest river in the world.",
            ),
        ],
        "which ocean does the amazon river flow into",
        {"short": "the Atlantic Ocean [1]", "sentence": "The Amazon River flows into the Atlantic Ocean [1]."},
    ),
]
INSTRUCTION = "Answer each question from the numbered documents and cite the document that supports the answer."
#: name -> (answer style of the examples, instruction line on top)
VARIANTS: dict[str, tuple[str, bool]] = {
    "short": ("short", False),
    "sentence": ("sentence", False),
    "short+instr": ("short", True),
}


def render_fewshot(question: str, docs: Sequence[Passage], variant: str) -> str:
    style, instr = VARIANTS[variant]
    blocks = []
    for ex_docs, ex_q, ex_a in _EXAMPLES:
        lines = [format_document(i, Passage(doc_id=t, text=x, title=t)) for i, (t, x) in enumerate(ex_docs, 1)]
        blocks.append("\n".join(lines) + f"\nQuestion: {ex_q}\nAnswer: {ex_a[style]}")
    target = "\n".join(format_document(i, p) for i, p in enumerate(docs, 1)) or "(no documents)"
    blocks.append(f"{target}\nQuestion: {question}\nAnswer:")
    return (INSTRUCTION + "\n\n" if instr else "") + "\n\n".join(blocks)


@dataclass
class FewShotRAG(RAGPipeline):
    """The shipped pipeline (retrieval, citation parsing, post hoc) with a few-shot prompt."""

    variant: str = "short"

    def _build(self, question: str, passages: Sequence[Passage], **kw: object) -> BuiltPrompt:
        q = validate_question(question)
        tok = self.generator.tokenizer
        docs = [truncate_passage(p, tok, self.prompt.max_doc_tokens) for p in passages]
        budget = self.generator.max_context - self.params.max_tokens
        while True:
            text = render_fewshot(q, docs, self.variant)
            n = len(tok.encode_prompt(text))
            if n <= budget:
                return BuiltPrompt(text, tuple(docs), tuple(range(1, len(docs) + 1)), n)
            if not docs:
                raise ContextBudgetError(f"the few-shot prompt alone needs {n} tokens (budget {budget})")
            docs.pop()


class CountingGenerator:
    """Wraps a generator; adds up generated tokens and the time spent in ``generate``."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.tokens = 0
        self.seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def generate(self, prompts: Sequence[str], params: GenerationParams) -> list[Generation]:
        t = time.perf_counter()
        out = self.inner.generate(prompts, params)
        self.seconds += time.perf_counter() - t
        self.tokens += sum(len(g.token_ids) for g in out)
        return out


def bootstrap(values: Sequence[float], n: int = 2000, seed: int = 0) -> tuple[float, float]:
    rng = random.Random(seed)
    m = len(values)
    means = sorted(sum(values[rng.randrange(m)] for _ in range(m)) / m for _ in range(n))
    return means[int(0.025 * n)], means[int(0.975 * n) - 1]


def score(answers: list[Any], qs: list[dict], gold: list[str]) -> dict[str, Any]:
    acc = [float(has_answer(a.text, q["answers"])) for a, q in zip(answers, qs)]
    echo = [float(any(m in a.text for m in ECHO_MARKS)) for a in answers]
    written = [float(any(s.citations and not s.post_hoc for s in a.sentences)) for a in answers]
    written_gold = [
        float(any(a.passages[n - 1].doc_id == g for s in a.sentences if not s.post_hoc for n in s.citations))
        for a, g in zip(answers, gold)
    ]
    cited = [float(g in {a.passages[n - 1].doc_id for n in a.cited_numbers()}) for a, g in zip(answers, gold)]
    m = len(answers)
    return {
        "acc": acc,
        "acc_mean": sum(acc) / m,
        "acc_ci": bootstrap(acc),
        "echo": sum(echo) / m,
        "written": sum(written) / m,
        "written_ci": bootstrap(written),
        "written_gold": sum(written_gold) / m,
        "cited_gold": sum(cited) / m,
        "dropped": sum(len(a.report.get("dropped_citations", [])) > 0 for a in answers) / m,
        "prompt_tokens": sum(int(a.report.get("prompt_tokens", 0)) for a in answers) / m,
    }


def run(
    label: str,
    gen: CountingGenerator,
    variant: str | None,
    texts: list[str],
    qs: list[dict],
    gold: list[str],
    retriever: Any,
    post_hoc: Any,
    max_tokens: int,
    out: Path,
) -> dict[str, Any]:
    gen.tokens, gen.seconds = 0, 0.0
    if variant is None:  # the shipped pipeline and prompt
        pipe: RAGPipeline = RAGPipeline(
            retriever, gen, k=5, params=GenerationParams(max_tokens=max_tokens), post_hoc=post_hoc
        )
    else:
        pipe = FewShotRAG(
            retriever,
            gen,
            k=5,
            params=GenerationParams(max_tokens=max_tokens, stop=("\n",)),
            post_hoc=post_hoc,
            variant=variant,
        )
    answers = pipe.ask_batch(texts, progress=False)
    res = score(answers, qs, gold)
    res.update(
        label=label, tok_s=gen.tokens / gen.seconds, s_q=gen.seconds / len(texts), gen_tokens=gen.tokens / len(texts)
    )
    with open(out / f"generators_{label.replace(' ', '_').replace('/', '-')}.jsonl", "w") as fh:
        for a, q, g in zip(answers, qs, gold):
            fh.write(
                json.dumps(
                    {
                        "question": a.question,
                        "answer": a.text,
                        "gold_answers": q["answers"],
                        "gold_doc": g,
                        "written": [list(s.citations) for s in a.sentences if not s.post_hoc],
                    }
                )
                + "\n"
            )
    print(f"  {label}: done ({gen.seconds:.0f} s generating)", flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--split", choices=["select", "report"], default="report")
    ap.add_argument("--questions", type=int, default=200, help="report split: the first N questions")
    ap.add_argument(
        "--variant", choices=sorted(VARIANTS), default="short", help="few-shot variant for the report split"
    )
    ap.add_argument("--variants", default=",".join(VARIANTS), help="select split: variants to compare")
    ap.add_argument("--no-shipped-gemma", action="store_true", help="report split: skip Gemma with the shipped prompt")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = ap.parse_args()

    from pipeline.citations import EmbeddingPostHocCiter
    from pipeline.models import resolve_generator
    from retrievers.index import load_index

    n_load = SELECT[1] if args.split == "select" else args.questions
    corpus, qs, gold = load(args.data, n_load)
    if args.split == "select":
        qs, gold = qs[SELECT[0] :], gold[SELECT[0] :]
    (args.out / args.split).mkdir(parents=True, exist_ok=True)
    index = load_index(nq_index(args.out, corpus))  # the same index bench_ask.py builds
    embedder = index.embedder()
    retriever = index.retriever("hybrid", embedder=embedder)
    post_hoc = EmbeddingPostHocCiter(embedder)
    texts = [q["question"] for q in qs]
    smol, gemma = resolve_generator("smollm2-135m-instruct"), resolve_generator("gemma3-270m")

    if args.split == "select":
        runs = [(f"gemma3-270m few-shot {v}", gemma, v) for v in args.variants.split(",")]
    else:
        runs = [
            ("smollm2-135m chat (shipped)", smol, None),
            (f"gemma3-270m few-shot {args.variant}", gemma, args.variant),
        ]
        if not args.no_shipped_gemma:
            runs.append(("gemma3-270m shipped prompt (zero-shot)", gemma, None))
    split = (
        f"questions {SELECT[0]}-{SELECT[1] - 1} (selection)"
        if args.split == "select"
        else f"first {len(qs)} questions (report)"
    )
    print(f"NQ-open {split}, hybrid k=5, greedy, max {args.max_tokens} new tokens, in-process vLLM fp32", flush=True)
    from pipeline.generators.vllm_local import VLLMGenerator

    results = []
    for model in dict.fromkeys(m for _, m, _ in runs):  # one engine per model, in order
        gen = CountingGenerator(VLLMGenerator(model))
        try:
            for lbl, m, v in runs:
                if m == model:
                    results.append(
                        run(lbl, gen, v, texts, qs, gold, retriever, post_hoc, args.max_tokens, args.out / args.split)
                    )
        finally:
            gen.inner.close()

    print(
        "\n| generator, prompt | answer accuracy [95% CI] | echoes prompt format | model-written valid [n] | "
        "gold cited by a written [n] | gold cited (with post hoc) | prompt tokens | gen tokens/q | tokens/s | "
        "s/question |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        lo, hi = r["acc_ci"]
        print(
            f"| {r['label']} | {r['acc_mean']:.3f} [{lo:.3f}, {hi:.3f}] | {r['echo']:.3f} | {r['written']:.3f} | "
            f"{r['written_gold']:.3f} | {r['cited_gold']:.3f} | {r['prompt_tokens']:.0f} | {r['gen_tokens']:.1f} | "
            f"{r['tok_s']:.1f} | {r['s_q']:.2f} |"
        )
    base = results[0]
    for r in results[1:]:
        diff = [a - b for a, b in zip(r["acc"], base["acc"])]
        lo, hi = bootstrap(diff)
        print(
            f"\naccuracy difference, {r['label']} minus {base['label']}: {sum(diff) / len(diff):+.3f} "
            f"[{lo:+.3f}, {hi:+.3f}] (paired bootstrap 95%)"
        )
    if len(results) > 1:
        print(
            "ratio: "
            + "; ".join(f"{r['label']} s/question = {r['s_q'] / base['s_q']:.2f}x {base['label']}" for r in results[1:])
        )


if __name__ == "__main__":
    main()
