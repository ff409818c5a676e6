"""Trustworthy answers on NQ-open (issue 10): today's default against the new one, side by side.

Corpus: every unique gold passage of NQ-open (2,600), one passage per document, as in
bench/bench_ask.py. Two question sets, disjoint:

* selection: questions 1000..1099, used ONLY to choose the abstention rule (printed);
* report: the first 200 questions (the issue's target set): every figure reported.

For a set, the script builds a second index without the set's gold passages (its questions are
then unanswerable from the corpus) and runs, in one process:

* ``before``: today's default (layout "ralm", raw output, post-hoc citations, no grounding);
* ``after``: the new default (chosen layout, cleaned output, citations "auto" = constrained
  decoding here, grounding: judge support, quotes, abstention signals) on the full index
  (answerable) and on the reduced one (unanswerable).

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
from bench_ask import DEFAULT_DATA, has_answer, nq_index  # noqa: E402
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
    return nq_index(OUT, corpus, name)


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


def table(
    rows_of: dict[str, list[dict[str, Any]]], answers: list[list[str]], gold: list[str], args: Any, thr: float
) -> None:
    """The report table from answer rows (``to_dict``) under the abstention rule of ``args``
    (default: ``AbstainRule()``'s), applied to each row's recorded signals."""
    from verifiers.grounding import AbstainRule

    rule = AbstainRule()
    r = args.min_relevance if args.min_relevance is not None else rule.min_relevance
    ms = (
        args.min_support
        if args.min_support is not None
        else (rule.min_support if rule.min_support is not None else thr)
    )
    ms = None if (ms is not None and ms < 0) or (args.min_support is None and not rule.require_support) else ms

    def row(label: str, rows: list[dict[str, Any]], abstain: bool) -> None:
        abst = [abstain and abstains(x["abstention"], r, ms) for x in rows]
        acc = [float(not x and has_answer(a["answer"], g)) for a, g, x in zip(rows, answers, abst)]
        cited = [float(not x and gd in {c["doc_id"] for c in a["citations"]}) for a, gd, x in zip(rows, gold, abst)]
        echo = [float(bool(ECHO.search(a["answer"]))) for a in rows]
        sents = [s for a, x in zip(rows, abst) if not x for s in a["sentences"] if s["citations"] or s["post_hoc"]]
        chosen = [float(not s["post_hoc"]) for s in sents]
        print(
            f"| {label} ({len(rows)} q) | {fmt(acc)} | {fmt(cited)} | {fmt(echo)} | {fmt(chosen)} "
            f"| {fmt([float(x) for x in abst])} |"
        )

    print(f"\nreport set: first {len(rows_of['after'])} questions; abstention rule min_relevance={r}, min_support={ms}")
    print(
        "| run | answer accuracy | gold passage cited | echoes prompt format "
        "| citations chosen by the model | abstained |"
    )
    print("|---|---|---|---|---|---|")
    n_before = len(rows_of["before"])
    row("today's default", rows_of["before"], False)
    if n_before < len(rows_of["after"]):
        row(f"new default, no abstention, first {n_before}", rows_of["after"][:n_before], False)
    row("new default, no abstention", rows_of["after"], False)
    row("new default", rows_of["after"], True)
    row("new default, gold passages removed from the index", rows_of["after-unanswerable"], True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--phase",
        choices=["selection", "report", "rescore"],
        required=True,
        help="rescore: the report table again from the saved report answers, under --min-relevance/--min-support",
    )
    ap.add_argument("--report-n", type=int, default=200)
    ap.add_argument("--selection-start", type=int, default=1000)
    ap.add_argument("--selection-n", type=int, default=100)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument(
        "--before-n", type=int, default=None, help="questions for today's default (default: all of the set)"
    )
    ap.add_argument(
        "--latency-n", type=int, default=20, help="questions asked one at a time by both defaults, interleaved"
    )
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
    if args.phase == "rescore":
        sub = rows[: args.report_n]
        saved = {
            label: [json.loads(line) for line in (OUT / f"trust_rep{args.report_n}_{label}.jsonl").open()]
            for label in ("before", "after", "after-unanswerable")
        }
        gold = [doc_key(next(c for c in r["ctxs"] if c.get("isgold"))) for r in sub]
        table(saved, [r["answers"] for r in sub], gold, args, float(load_judge("default").threshold))
        return
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
        # Today's default cites post hoc; the new one resolves RAGPipeline's default ("auto":
        # constrained decoding on this vLLM engine).
        mode = {} if new else {"citations": "post-hoc"}
        pipe = RAGPipeline(
            idx.retriever("hybrid", embedder=emb),
            gen,
            k=5,
            params=params,
            prompt=prompt,
            post_hoc=EmbeddingPostHocCiter(emb),
            clean=new,
            **mode,
        )
        return pipe, emb

    runs: dict[str, dict[str, Any]] = {}
    latency: dict[str, list[float]] = {"before": [], "after": []}
    if args.phase == "report" and args.latency_n:
        # One question at a time, today's and the new default interleaved (same engine).
        (old, _), (cur, cur_emb) = pipeline(full, False), pipeline(full, True)
        grounder = Grounder(judge, embed=cur_emb)
        for q in qs[: args.latency_n]:
            t = time.perf_counter()
            old.ask(q)
            latency["before"].append(time.perf_counter() - t)
            t = time.perf_counter()
            grounder.ground(cur.ask(q))
            latency["after"].append(time.perf_counter() - t)
    for label, index_dir, new in (("before", full, False), ("after", full, True), ("after-unanswerable", minus, True)):
        pipe, emb = pipeline(index_dir, new)
        these = qs if new or args.before_n is None else qs[: args.before_n]
        t = time.perf_counter()
        out = pipe.ask_batch(these, progress=False)
        gen_s = time.perf_counter() - t
        g_s = 0.0
        if new:
            t = time.perf_counter()
            out = Grounder(
                judge, embed=emb, abstain=AbstainRule(min_relevance=-1.0, require_support=False)
            ).ground_batch(out)
            g_s = time.perf_counter() - t
        runs[label] = {"answers": out, "ask_s": gen_s, "ground_s": g_s, "n": len(these)}
        with open(OUT / f"trust_{name}_{label}.jsonl", "w") as fh:
            for a in out:
                fh.write(json.dumps(a.to_dict()) + "\n")
        print(f"{label}: {len(these)} questions, ask {gen_s:.1f}s, grounding {g_s:.1f}s", flush=True)
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
        print(
            f"\nchosen on the selection set (answerable abstention <= 0.08, the most unanswerable abstention): "
            f"min_relevance={best[0]} min_support={best[1]} -> unanswerable {best[2]:.3f}, answerable {best[3]:.3f}"
        )
        return

    rows_of = {label: [a.to_dict() for a in run["answers"]] for label, run in runs.items()}
    table(rows_of, answers, gold, args, thr)
    b_s = runs["before"]["ask_s"] / runs["before"]["n"]
    a_s = (runs["after"]["ask_s"] + runs["after"]["ground_s"]) / len(qs)
    print(
        f"\nbatched seconds per question: today {b_s:.3f} ({runs['before']['n']} q), new {a_s:.3f} ({len(qs)} q: ask "
        f"{runs['after']['ask_s'] / len(qs):.3f} + grounding {runs['after']['ground_s'] / len(qs):.3f})"
    )
    if latency["before"]:
        import statistics

        lb, la = statistics.median(latency["before"]), statistics.median(latency["after"])
        print(
            f"one question at a time ({len(latency['before'])} q, interleaved): median today {lb:.2f}s, new {la:.2f}s"
        )
        print(f"ratio: new / today single-question latency = {la / lb:.2f}x")


if __name__ == "__main__":
    main()
