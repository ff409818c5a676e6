"""The judge half of the abstention rule on saved answers: for each answer, the best support
of any of its sentences by any shown passage (the default judge), and the question-passage
relevance; prints how often the combined rule (relevance < R, or no supported sentence)
abstains. Input: answer rows written by `citerag ask --json` / bench scripts (for example
bench/out/layout_ralm.jsonl, the selection questions 1000-1099 answered with the shipped layout).

    .venv/bin/python bench/abstain_support.py bench/out/layout_ralm.jsonl --min-relevance 0.5125
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from bench_trust import fmt  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("rows", type=Path)
    ap.add_argument("--min-relevance", type=float, required=True)
    args = ap.parse_args()
    from eval.saliency.context import answer_from_dict
    from pipeline.models import default_embedder_path
    from retrievers.dense import SentenceTransformerEmbedder
    from verifiers.grounding import AbstainRule, Grounder
    from verifiers.judges import load_judge

    answers = [answer_from_dict(json.loads(line), where=f"row {i}") for i, line in enumerate(args.rows.open())]
    emb = SentenceTransformerEmbedder(default_embedder_path())
    g = Grounder(
        load_judge("default"), embed=emb, abstain=AbstainRule(min_relevance=-1.0, require_support=False), quotes=False
    )
    out = g.ground_batch(answers)
    thr = g.support_threshold
    rel = [a.report["abstention"]["relevance"] for a in out]
    sup = [a.report["abstention"]["max_support"] for a in out]
    print(f"{len(out)} answers from {args.rows}")
    print(f"abstain by relevance < {args.min_relevance}: {fmt([float(r < args.min_relevance) for r in rel])}")
    print(f"abstain by no supported sentence (< {thr:.3f}): {fmt([float(s < thr) for s in sup])}")
    print(
        "abstain by either, at the judge's threshold: "
        f"{fmt([float(r < args.min_relevance or s < thr) for r, s in zip(rel, sup)])}"
    )
    print("| min_support | abstain by either |\n|---|---|")
    for ms in (0.5, 0.3, 0.2, 0.1, 0.05, 0.02):
        print(f"| {ms} | {fmt([float(r < args.min_relevance or s < ms) for r, s in zip(rel, sup)])} |")


if __name__ == "__main__":
    main()
