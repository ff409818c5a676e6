"""Trustworthy answers on NQ-open (issue 10): today's default against the new one, side by side.

Corpus: every unique gold passage of NQ-open (2,600), one passage per document, as in
bench/bench_ask.py. Two question sets, disjoint:

* selection: questions 1000..1099, used ONLY to choose the abstention rule (printed);
* report: the first 200 questions (the issue's target set): every figure reported.

For a set, the script builds a second index without the set's gold passages (its questions are
then unanswerable from the corpus) and runs, in one process:

* ``before``: today's default (layout "ralm", raw output, post-hoc citations, no grounding);
* ``after``: the new default (chosen layout, cleaned output, grounding: judge support, quotes,
  abstention signals) on the full index (answerable) and on the reduced one (unanswerable).

Abstention is applied from the recorded signals (question-passage relevance, best judge
support), which is exactly the rule ``verifiers.grounding.AbstainRule`` applies online.

    .venv/bin/python bench/bench_trust.py --phase selection     # prints the chosen rule
    .venv/bin/python bench/bench_trust.py --phase report [--min-relevance R --min-support S]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from bench_ask import DEFAULT_DATA, has_answer  # noqa: E402
from prompt_layouts import ECHO  # noqa: E402

OUT = ROOT / "bench" / "out"


def doc_key(ctx: dict[str, Any]) -> str:
    return hashlib.sha1((ctx["title"] + "\n" + ctx["text"]).encode()).hexdigest()[:12]


def load_rows() -> list[dict[str, Any]]:
    with gzip.open(DEFAULT_DATA, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def corpus_of(rows: list[dict[str, Any]], exclude: set[str] = frozenset()) -> list[dict[str, str]]:  # type: ignore[assignment]
    corpus: dict[str, dict[str, str]] = {}
    for row in rows:
        for ctx in row["ctxs"]:
            if ctx.get("isgold") and doc_key(ctx) not in exclude:
                corpus.setdefault(doc_key(ctx), {"id": doc_key(ctx), "title": ctx["title"], "text": ctx["text"]})
    return list(corpus.values())


def ensure_index(name: str, corpus: list[dict[str, str]]) -> Path:
    from retrievers.index import build_index

    target = OUT / name
    if (target / "manifest.json").is_file():
        return target
    OUT.mkdir(parents=True, exist_ok=True)
    f = OUT / f"{name}.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in corpus))
    build_index(str(f), str(target), mode="tokens", size=400, overlap=0, progress=False)
    return target


def bootstrap(values: list[float], seed: int = 0, n: int = 2000) -> tuple[float, float, float]:
    if not values:
        return (float("nan"),) * 3  # type: ignore[return-value]
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(values, k=len(values))) / len(values) for _ in range(n))
    return sum(values) / len(values), means[int(0.025 * n)], means[int(0.975 * n) - 1]


def fmt(values: list[float]) -> str:
    m, lo, hi = bootstrap(values)
    return f"{m:.3f} [{lo:.3f}, {hi:.3f}]"


def abstains(sig: dict[str, Any], min_relevance: float, min_support: float | None) -> bool:
    rel = sig.get("relevance")
    if rel is not None and rel < min_relevance:
        return True
    return min_support is not None and sig["max_support"] < min_support


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--phase", choices=["selection", "report"], required=True)
    ap.add_argument("--report-n", type=int, default=200)
    ap.add_argument("--selection-start", type=int, default=1000)
    ap.add_argument("--selection-n", type=int, default=100)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--layout", default=None, help="prompt layout of the new default (default: PromptConfig's)")
    ap.add_argument("--min-relevance", type=float, default=None)
    ap.add_argument("--min-support", type=float, default=None, help="negative: relevance only")
    args = ap.parse_args()

    from pipeline.citations import EmbeddingPostHocCiter
    from pipeline.generators.vllm_local import VLLMGenerator
    from pipeline.models import resolve_generator
    from pipeline.prompting import PromptConfig
    from pipeline.rag import RAGPipeline
    from pipeline.types import GenerationParams
    from retrievers.index import load_index
    from verifiers.grounding import AbstainRule, Grounder
    from verifiers.judges import load_judge

    rows = load_rows()
    if args.phase == "selection":
        sub = rows[args.selection_start : args.selection_start + args.selection_n]
        name = f"sel{args.selection_start}_{args.selection_n}"
    else:
        sub = rows[: args.report_n]
        name = f"rep{args.report_n}"
    qs = [r["question"] for r in sub]
    answers = [r["answers"] for r in sub]
    gold = [doc_key(next(c for c in r["ctxs"] if c.get("isgold"))) for r in sub]
    full = ensure_index("nq_index", corpus_of(rows))
    minus = ensure_index(f"nq_index_minus_{name}", corpus_of(rows, set(gold)))

    gen = VLLMGenerator(resolve_generator(None))
    judge = load_judge("default")
    params = GenerationParams(max_tokens=args.max_tokens)
    layout = args.layout or PromptConfig().layout

    def pipeline(index_dir: Path, new: bool) -> tuple[RAGPipeline, Any]:
        idx = load_index(index_dir)
        emb = idx.embedder()
        prompt = PromptConfig(layout=layout) if new else PromptConfig(layout="ralm")
        pipe = RAGPipeline(idx.retriever("hybrid", embedder=emb), gen, k=5, params=params, prompt=prompt,
                           post_hoc=EmbeddingPostHocCiter(emb), clean=new)
        return pipe, emb

    runs: dict[str, dict[str, Any]] = {}
    for label, index_dir, new in (("before", full, False), ("after", full, True), ("after-unanswerable", minus, True)):
        pipe, emb = pipeline(index_dir, new)
        t = time.perf_counter()
        out = pipe.ask_batch(qs, progress=False)
        gen_s = time.perf_counter() - t
        g_s = 0.0
        if new:
            t = time.perf_counter()
            out = Grounder(judge, embed=emb, abstain=AbstainRule(min_relevance=-1.0, require_support=False)).ground_batch(out)
            g_s = time.perf_counter() - t
        runs[label] = {"answers": out, "ask_s": gen_s, "ground_s": g_s}
        with open(OUT / f"trust_{name}_{label}.jsonl", "w") as fh:
            for a in out:
                fh.write(json.dumps(a.to_dict()) + "\n")
        print(f"{label}: {len(qs)} questions, ask {gen_s:.1f}s, grounding {g_s:.1f}s", flush=True)
    gen.close()

    sig_ans = [a.report["abstention"] for a in runs["after"]["answers"]]
    sig_un = [a.report["abstention"] for a in runs["after-unanswerable"]["answers"]]
    thr = float(judge.threshold)

    if args.phase == "selection":
        best = None
        print("\n| min_relevance | min_support | abstain unanswerable | abstain answerable |\n|---|---|---|---|")
        for ms in (None, thr, 0.5, 0.3, 0.1):
            for i in range(0, 41):
                r = round(0.10 + 0.0125 * i, 4)
                un = sum(abstains(s, r, ms) for s in sig_un) / len(sig_un)
                an = sum(abstains(s, r, ms) for s in sig_ans) / len(sig_ans)
                if an <= 0.08 and (best is None or un > best[2] or (un == best[2] and an < best[3])):
                    best = (r, ms, un, an)
                if i % 4 == 0:
                    print(f"| {r:.3f} | {ms if ms is None else round(ms, 3)} | {un:.3f} | {an:.3f} |")
        print(f"\nchosen on the selection set (answerable abstention <= 0.08, the most unanswerable abstention): "
              f"min_relevance={best[0]} min_support={best[1]} -> unanswerable {best[2]:.3f}, answerable {best[3]:.3f}")
        return

    rule = AbstainRule()
    r = args.min_relevance if args.min_relevance is not None else rule.min_relevance
    ms = args.min_support if args.min_support is not None else (rule.min_support if rule.min_support is not None else thr)
    ms = None if (ms is not None and ms < 0) or (args.min_support is None and not rule.require_support) else ms
    before, after = runs["before"]["answers"], runs["after"]["answers"]
    ab = [abstains(s, r, ms) for s in sig_ans]
    ab_un = [abstains(s, r, ms) for s in sig_un]

    def row(label: str, ans: list[Any], abst: list[bool] | None) -> None:
        abst = abst or [False] * len(ans)
        acc = [float(has_answer("" if x else a.text, g)) for a, g, x in zip(ans, answers, abst)]
        cited = [float(not x and gd in {a.passages[n - 1].doc_id for n in a.cited_numbers()}) for a, gd, x in zip(ans, gold, abst)]
        echo = [float(bool(ECHO.search(a.text))) for a in ans]
        sents = [s for a, x in zip(ans, abst) if not x for s in a.sentences if s.citations or s.post_hoc]
        chosen = [float(not s.post_hoc) for s in sents]
        print(f"| {label} | {fmt(acc)} | {fmt(cited)} | {fmt(echo)} | {fmt(chosen)} | {fmt([float(x) for x in abst])} |")

    print(f"\nreport set: first {len(qs)} questions; rule min_relevance={r}, min_support={ms}")
    print("| run | answer accuracy | gold passage cited | echoes prompt format | citations chosen by the model | abstained |")
    print("|---|---|---|---|---|---|")
    row("today's default", before, None)
    row("new default, no abstention", after, None)
    row("new default", after, ab)
    row("new default, gold removed from the index", runs["after-unanswerable"]["answers"], ab_un)
    b_s = runs["before"]["ask_s"] / len(qs)
    a_s = (runs["after"]["ask_s"] + runs["after"]["ground_s"]) / len(qs)
    print(f"\nseconds per question (batched): today {b_s:.3f}, new {a_s:.3f} (ask {runs['after']['ask_s'] / len(qs):.3f} + "
          f"grounding {runs['after']['ground_s'] / len(qs):.3f})")
    print(f"ratio: new / today latency = {a_s / b_s:.2f}x")


if __name__ == "__main__":
    main()
