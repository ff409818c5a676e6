"""Benchmark of verification and revision (issue 3) on NQ-open (gold passages pooled as the corpus).

1. `ask` on N questions (hybrid k=5, SmolLM2-135M through in-process vLLM), then `ask --verify`
   on the same answers: the share of sentences whose citations support them (by the default
   judge), before and after verification. "After" is recomputed from the verified answers'
   own sentences and citations with the same judge call, not taken from the report.
2. `revise` throughput: claims per second for the RARR loop over the answers' texts, all texts
   in one batch, against the same loop called one text at a time on a subset (side by side).

The corpus and index are built with bench_ask's functions (same files in bench/out).

    .venv/bin/python bench/bench_revise.py [--questions 100] [--serial 10] [--samples 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_ask import DEFAULT_DATA, has_answer, load, nq_index  # noqa: E402


def supported_share(answers: list, judge) -> tuple[float, int, int]:  # type: ignore[no-untyped-def]
    """(share, supported, total) of sentences with words whose citations support them."""
    from pipeline.citations import strip_markers
    from verifiers.evidence import evidence_text

    pairs, owner = [], []
    total = 0
    for ai, a in enumerate(answers):
        for si, s in enumerate(a.sentences):
            claim = strip_markers(s.text)
            if not any(ch.isalnum() for ch in claim):
                continue
            total += 1
            for n in s.citations:
                pairs.append((evidence_text(a.passages[n - 1]), claim))
                owner.append((ai, si))
    best: dict[tuple[int, int], float] = {}
    for key, score in zip(owner, judge.judge(pairs) if pairs else []):
        best[key] = max(best.get(key, 0.0), float(score))
    good = sum(v >= judge.threshold for v in best.values())
    return good / max(total, 1), good, total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--questions", type=int, default=100)
    ap.add_argument("--serial", type=int, default=10, help="texts revised one at a time for the side-by-side ratio")
    ap.add_argument("--samples", type=int, default=3, help="question-generation samples per claim")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--judge", default="default")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = ap.parse_args()

    from pipeline.citations import EmbeddingPostHocCiter
    from pipeline.generators.vllm_local import VLLMGenerator
    from pipeline.models import resolve_generator
    from pipeline.rag import RAGPipeline
    from pipeline.types import GenerationParams
    from retrievers.index import load_index
    from verifiers.judges import load_judge
    from verifiers.rarr import build_reviser
    from verifiers.verify import verify_answers

    corpus, qs, gold = load(args.data, args.questions)
    index = load_index(nq_index(args.out, corpus))
    embedder = index.embedder()
    retriever = index.retriever("hybrid", embedder=embedder)
    judge = load_judge(args.judge)
    gen = VLLMGenerator(resolve_generator(None))
    texts = [q["question"] for q in qs]
    print(
        f"corpus: {len(index.passages)} passages; questions: {len(qs)}; "
        f"judge: {args.judge} (threshold {judge.threshold:.3f})"
    )

    # -- ask, then ask --verify on the same answers --------------------------------------------
    pipe = RAGPipeline(
        retriever,
        gen,
        k=5,
        params=GenerationParams(max_tokens=args.max_tokens),
        post_hoc=EmbeddingPostHocCiter(embedder),
    )
    t = time.perf_counter()
    answers = pipe.ask_batch(texts, progress=False)
    ask_s = time.perf_counter() - t
    reviser = build_reviser(retriever, gen, judge, samples=args.samples)
    t = time.perf_counter()
    verified = verify_answers(answers, judge, reviser)
    verify_s = time.perf_counter() - t
    before, b_good, b_total = supported_share(answers, judge)
    after, a_good, a_total = supported_share(verified, judge)
    statuses: dict[str, int] = {}
    for v in verified:
        for d in v.report["verification"]["sentences"]:
            statuses[d["status"]] = statuses.get(d["status"], 0) + 1
    acc_before = sum(has_answer(a.text, q["answers"]) for a, q in zip(answers, qs)) / len(qs)
    acc_after = sum(has_answer(a.text, q["answers"]) for a, q in zip(verified, qs)) / len(qs)

    def cited_gold(ans: list) -> float:
        return sum(g in {a.passages[n - 1].doc_id for n in a.cited_numbers()} for a, g in zip(ans, gold)) / len(qs)

    with open(args.out / "nq_verified.jsonl", "w") as fh:
        for a, v in zip(answers, verified):
            fh.write(json.dumps({"before": a.to_dict(), "after": v.to_dict()}) + "\n")

    print(
        f"\n| answers ({len(qs)} NQ-open questions) | sentences | supported by their citations | share "
        "| answer accuracy | gold passage cited | seconds |"
    )
    print("|---|---|---|---|---|---|---|")
    print(f"| ask | {b_total} | {b_good} | {before:.3f} | {acc_before:.3f} | {cited_gold(answers):.3f} | {ask_s:.1f} |")
    print(
        f"| ask --verify | {a_total} | {a_good} | {after:.3f} | {acc_after:.3f} | {cited_gold(verified):.3f} "
        f"| {ask_s + verify_s:.1f} |"
    )
    print(f"\nverification outcomes per sentence: {json.dumps(dict(sorted(statuses.items())))}")

    # -- revise throughput: batched against one text at a time --------------------------------
    rev_texts = [a.text for a in answers if a.text.strip()]
    t = time.perf_counter()
    results = reviser.revise_batch(rev_texts)
    batch_s = time.perf_counter() - t
    n_claims = sum(len(r.claims) for r in results)
    n_edits = sum(len(r.revision.edits) for r in results)
    kept = sum(c.status == "kept" for r in results for c in r.claims)
    pres = sum(r.revision.preservation for r in results) / max(len(results), 1)
    sub = rev_texts[: args.serial]
    t = time.perf_counter()
    sub_claims = 0
    for text in sub:
        sub_claims += len(reviser.revise(text).claims)
    serial_s = time.perf_counter() - t
    sub_batch_t = time.perf_counter()
    reviser.revise_batch(sub)
    sub_batch_s = time.perf_counter() - sub_batch_t
    print("\n| revise | texts | claims | seconds | claims/s |\n|---|---|---|---|---|")
    print(f"| batched, all answers | {len(rev_texts)} | {n_claims} | {batch_s:.1f} | {n_claims / batch_s:.2f} |")
    print(
        f"| batched, first {len(sub)} | {len(sub)} | {sub_claims} | {sub_batch_s:.1f} "
        f"| {sub_claims / sub_batch_s:.2f} |"
    )
    print(
        f"| one text at a time, first {len(sub)} | {len(sub)} | {sub_claims} | {serial_s:.1f} "
        f"| {sub_claims / serial_s:.2f} |"
    )
    print(
        f"revise over all answers: {kept} claims kept as written, {n_edits} edits applied, mean preservation {pres:.3f}"
    )
    print(
        f"\nratios: supported share after/before verification = {after / max(before, 1e-9):.2f}x; "
        f"revise batched/one-at-a-time throughput = {serial_s / sub_batch_s:.1f}x"
    )
    gen.close()


if __name__ == "__main__":
    main()
