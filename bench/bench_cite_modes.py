"""Citation modes side by side on NQ-open: post hoc against constrained decoding.

Same setup as bench/bench_ask.py: every unique gold passage of the file pooled as the corpus
(one passage per document), hybrid retrieval k=5, SmolLM2-135M-Instruct fp32 through
in-process vLLM, greedy. Each mode answers the same questions in one batched ``ask_batch``
on one engine (prefix caching off, so the mode that runs second gets no free prefill), and
the table gives, per mode, with bootstrap 95% intervals over questions:

* answer accuracy: a gold answer string appears in the answer (normalised as in bench_ask);
* gold passage cited: the question's gold passage is among the cited passages;
* model-chosen share: sentences whose citation the generator wrote itself (not post hoc),
  over all sentences;
* answers with no citation at all, and answers that echo the prompt's "Document" header;
* latency per question of the batched run (retrieval + generation + citation).

Choose on questions 1000-1099 (``--start 1000 --questions 100``), report on the first 200
(``--start 0 --questions 200``, the issue's target set). Results go to BENCHMARKS.md by hand.

    .venv/bin/python bench/bench_cite_modes.py [--start 0] [--questions 200] [--modes post-hoc,constrained]
        [--max-tokens 64] [--max-sentences 3] [--max-words 40] [--cite-position either] [--out bench/out/cite_modes]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_ask import DEFAULT_DATA, has_answer, load, nq_index  # noqa: E402


def bootstrap(rows: list[list[float]], stat: Any, reps: int, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of ``stat(rows)`` resampling the rows (questions)."""
    rng = random.Random(seed)
    n = len(rows)
    vals = sorted(stat([rows[rng.randrange(n)] for _ in range(n)]) for _ in range(reps))
    return vals[int(0.025 * reps)], vals[min(reps - 1, int(0.975 * reps))]


def mean_of(col: int) -> Any:
    return lambda rows: sum(r[col] for r in rows) / max(1, len(rows))


def ratio_of(num: int, den: int) -> Any:
    return lambda rows: sum(r[num] for r in rows) / max(1, sum(r[den] for r in rows))


def per_question(answer: Any, answers: list[str], gold: str) -> list[float]:
    """[accurate, gold cited, sentences, model-chosen sentences, no citation, echo, gold shown]."""
    cited = {answer.passages[n - 1].doc_id for n in answer.cited_numbers()}
    sents = [s for s in answer.sentences if s.text.strip()]
    chosen = sum(1 for s in sents if s.citations and not s.post_hoc)
    return [
        float(has_answer(answer.text, answers)),
        float(gold in cited),
        float(len(sents)),
        float(chosen),
        float(not cited),
        float("Document" in answer.text),
        float(gold in {p.doc_id for p in answer.passages}),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--start", type=int, default=0, help="first question (0: the report set; 1000: the selection set)")
    ap.add_argument("--questions", type=int, default=200)
    ap.add_argument("--modes", default="post-hoc,constrained")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--max-sentences", type=int, default=3, help="constrained mode: sentences per answer")
    ap.add_argument("--max-words", type=int, default=40, help="constrained mode: words per sentence")
    ap.add_argument("--cite-position", default="either", help="constrained mode: before-stop, after-stop or either")
    ap.add_argument("--bootstrap", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "cite_modes")
    args = ap.parse_args()

    from pipeline.citations import EmbeddingPostHocCiter
    from pipeline.constrained import ConstraintSpec, check_citation_mode
    from pipeline.generators.vllm_local import VLLMGenerator
    from pipeline.models import resolve_generator
    from pipeline.rag import RAGPipeline
    from pipeline.types import GenerationParams
    from retrievers.index import load_index

    modes = [check_citation_mode(m.strip()) for m in args.modes.split(",") if m.strip()]
    corpus, qs_all, gold_all = load(args.data, args.start + args.questions)
    qs, gold = qs_all[args.start :], gold_all[args.start :]
    index = load_index(nq_index(args.out, corpus))
    embedder = index.embedder()
    retriever = index.retriever("hybrid", embedder=embedder)
    texts = [q["question"] for q in qs]
    spec = ConstraintSpec(max_sentences=args.max_sentences, max_words=args.max_words, cite_position=args.cite_position)
    params = GenerationParams(max_tokens=args.max_tokens)

    gen = VLLMGenerator(resolve_generator(None), enable_prefix_caching=False)
    results: dict[str, dict[str, Any]] = {}
    try:
        # Warm the engine (first-batch set-up) on questions outside both sets' order effects.
        RAGPipeline(retriever, gen, k=args.k, params=params).ask_batch(texts[:2], progress=False)
        for mode in modes:
            pipe = RAGPipeline(
                retriever,
                gen,
                k=args.k,
                params=params,
                citations=mode,
                constraint=spec,
                post_hoc=EmbeddingPostHocCiter(embedder) if mode == "post-hoc" else None,
            )
            t = time.perf_counter()
            answers = pipe.ask_batch(texts, progress=False)
            wall = time.perf_counter() - t
            rows = [per_question(a, q["answers"], g) for a, q, g in zip(answers, qs, gold)]
            results[mode] = {"rows": rows, "wall": wall, "gen_s": answers[0].report["timings"]["generate_s"]}
            tag = mode if mode == "post-hoc" else f"{mode}-{args.cite_position}-s{args.max_sentences}"
            with open(args.out / f"answers_{tag}_{args.start}_{args.questions}.jsonl", "w") as fh:
                for a, q, g in zip(answers, qs, gold):
                    fh.write(json.dumps({**a.to_dict(), "gold_answers": q["answers"], "gold_doc": g}) + "\n")
    finally:
        gen.close()

    n = len(qs)
    print(
        f"\nNQ-open questions {args.start}-{args.start + n - 1} ({n}), corpus {len(corpus)} gold passages, "
        f"hybrid k={args.k}, "
        f"SmolLM2-135M fp32 vLLM greedy, max_tokens={args.max_tokens}; constrained: {spec}"
    )
    metrics = [
        ("answer accuracy", mean_of(0)),
        ("gold passage cited", mean_of(1)),
        ("model-chosen share of sentences", ratio_of(3, 2)),
        ("answers with no citation", mean_of(4)),
        ("answers echoing 'Document'", mean_of(5)),
    ]
    print("\n| metric | " + " | ".join(modes) + " |\n|---|" + "---|" * len(modes))
    for name, stat in metrics:
        cells = []
        for m in modes:
            rows = results[m]["rows"]
            lo, hi = bootstrap(rows, stat, args.bootstrap)
            cells.append(f"{stat(rows):.3f} [{lo:.3f}, {hi:.3f}]")
        print(f"| {name} | " + " | ".join(cells) + " |")
    cells = [f"{sum(r[2] for r in results[m]['rows']) / n:.2f}" for m in modes]
    print("| sentences per answer | " + " | ".join(cells) + " |")
    cells = [f"{results[m]['wall'] / n:.3f} s (generate {results[m]['gen_s'] / n:.3f} s)" for m in modes]
    print("| latency per question, batched | " + " | ".join(cells) + " |")
    shown = sum(r[6] for r in results[modes[0]]["rows"]) / n
    print(f"\ngold passage shown (retrieval recall@{args.k}): {shown:.3f}")
    if len(modes) == 2:
        a, b = (results[m]["rows"] for m in modes)
        paired = [ra + rb for ra, rb in zip(a, b)]
        w = len(a[0])
        for name, col in (("answer accuracy", 0), ("gold passage cited", 1)):
            diff = lambda rows, c=col: sum(r[w + c] - r[c] for r in rows) / len(rows)  # noqa: E731
            lo, hi = bootstrap(paired, diff, args.bootstrap)
            print(f"{name}: {modes[1]} - {modes[0]} = {diff(paired):+.3f} [{lo:+.3f}, {hi:+.3f}] (paired bootstrap)")
        print(
            f"ratio: latency {modes[1]} / {modes[0]} = {results[modes[1]]['wall'] / results[modes[0]]['wall']:.2f}x "
            f"(generation {results[modes[1]]['gen_s'] / results[modes[0]]['gen_s']:.2f}x)"
        )


if __name__ == "__main__":
    main()
