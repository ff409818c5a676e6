"""How should an uncited sentence's citation be chosen? Scores saved bench_ask answers.

Reads bench/out/nq_answers.jsonl (written by bench/bench_ask.py) and reports, for several
ways of picking one shown passage per sentence, the share of questions whose gold passage
ends up cited. Deterministic; no generation.

    .venv/bin/python bench/posthoc_choice.py [--answers bench/out/nq_answers.jsonl]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--answers", type=Path, default=ROOT / "bench" / "out" / "nq_answers.jsonl")
    args = ap.parse_args()

    import numpy as np

    from pipeline.citations import strip_markers
    from retrievers.dense import SentenceTransformerEmbedder
    from verifiers.judges import load_judge

    rows = [json.loads(line) for line in args.answers.open()]
    emb = SentenceTransformerEmbedder("all-MiniLM-L6-v2")
    judge = load_judge("default")
    pairs = [
        (f"{p['title']}: {p['text']}", f"{r['question']} {strip_markers(s['text'])}")
        for r in rows
        for s in r["sentences"]
        for p in r["passages"]
    ]
    support = iter(judge.judge(pairs))
    hits = {
        "sentence only": 0,
        "question + sentence": 0,
        "question + sentence, plus relevance (shipped)": 0,
        "judge": 0,
        "judge + shipped score": 0,
    }
    for r in rows:
        ptxt = [f"{p['title']}: {p['text']}" for p in r["passages"]]
        ids = [p["doc_id"] for p in r["passages"]]
        sents = [strip_markers(s["text"]) for s in r["sentences"]]
        if not sents:
            continue
        P, S = emb(ptxt), emb(sents)
        QS, Q = emb([f"{r['question']} {s}" for s in sents]), emb([r["question"]])
        J = np.array([[next(support) for _ in ptxt] for _ in sents])
        shipped = QS @ P.T + Q @ P.T
        for name, m in (
            ("sentence only", S @ P.T),
            ("question + sentence", QS @ P.T),
            ("question + sentence, plus relevance (shipped)", shipped),
            ("judge", J),
            ("judge + shipped score", J + shipped),
        ):
            hits[name] += r["gold_doc"] in {ids[int(np.argmax(row))] for row in m}
    print(f"| post-hoc choice ({len(rows)} answers) | gold passage cited |\n|---|---|")
    for name, h in hits.items():
        print(f"| {name} | {h / len(rows):.3f} |")


if __name__ == "__main__":
    main()
