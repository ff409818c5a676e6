"""Draw the calibration windows of the static-int8 ONNX judge from the judge's TRAINING data.

``onnx-int8-static`` (verifiers/judge_onnx.py) fixes every activation's int8 range from a
calibration set, which must be in a fresh clone (no ../shared/data) and must not come from
AttributionBench dev, which reports the judge's quality. So this script draws windows once from
sets the default judge was trained on (its card's ``training.data``), seeded, and writes them
next to the card: ``verifiers/default_judge/calibration_windows.jsonl.gz``, one
``{"evidence", "claim", "source"}`` per line, each evidence one judge window (<= 192 tokens with
the claim), so the ranges are those of real windows: long evidence cut as the judge cuts it,
and short NLI premises.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/make_judge_calibration.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: (file under --data, pairs drawn): long-evidence sets first, all in the card's training data.
SPECS = (
    ("wice/claim/dev.jsonl", 50),
    ("nli/contractnli/dev.pairs.jsonl", 40),
    ("nli/fm2/dev.pairs.jsonl", 40),
    ("nli/summac/xsumfaith_val.pairs.jsonl", 30),
    ("nli/summac/polytope_val.pairs.jsonl", 20),
    ("nli/scitail/test.pairs.jsonl", 25),
    ("nli/rte_glue/train.pairs.jsonl", 25),
    ("nli/mnli_dev_felsal/dev_matched_mismatched.pairs.jsonl", 25),
    ("snli/snli_1.0_train_subset.min.jsonl", 25),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--seed", type=int, default=13)
    args = ap.parse_args()

    from verifiers.judge_onnx import CALIBRATION_NAME
    from verifiers.judge_train import read_pairs
    from verifiers.judges import CrossEncoderJudge, default_judge_dir

    judge_dir = default_judge_dir()
    trained_on = " ".join(json.loads((judge_dir / "citerag_judge.json").read_text())["training"]["data"])
    judge = CrossEncoderJudge(str(judge_dir), device="cpu")
    rng = random.Random(args.seed)
    rows = []
    for name, n in SPECS:
        assert name in trained_on, f"{name} is not in the judge's training data"
        for pair in rng.sample(read_pairs(args.data / name, extra=False), n):
            windows = judge.windows(pair.evidence, pair.claim)
            source = Path(name).parent.name if name.startswith("nli/") else name.split("/")[0]
            rows.append({"evidence": windows[rng.randrange(len(windows))], "claim": pair.claim, "source": source})
    out = judge_dir / CALIBRATION_NAME
    # mtime=0: the same windows give the same bytes
    with gzip.GzipFile(out, "wb", mtime=0) as fh:
        fh.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8"))
    print(f"{len(rows)} windows -> {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
