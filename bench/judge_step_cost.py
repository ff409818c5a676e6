"""Cost of one judge training step for two base encoders, side by side in one run.

The same batches (batch 16, real pairs from the training mix, max length 192, embeddings
frozen as in ``citerag judge train``) go through forward + backward + AdamW step on each base,
alternating bases step by step so both see the same machine load; prints the median seconds
per step of each, and the projected time of one v2-sized epoch (2,093 steps).

    OMP_NUM_THREADS=1 .venv/bin/python bench/judge_step_cost.py --base verifiers/default_judge \\
        --base /path/to/all-mpnet-base-v2 [--steps 6] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.bench_ask import SHARED_DATA  # noqa: E402

DATA = SHARED_DATA
FILES = [
    DATA / "nli" / "fm2" / "dev.pairs.jsonl",
    DATA / "wice" / "claim" / "dev.jsonl",
    DATA / "nli" / "scitail" / "test.pairs.jsonl",
]
EPOCH_STEPS = 2093  # v2's run (33,484 pairs, batch 16)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", action="append", required=True)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=192)
    args = ap.parse_args()

    import random

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from verifiers.judge_train import read_pairs

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    pairs = [p for f in FILES for p in read_pairs(f, max_pairs=200, seed=1)]
    random.Random(0).shuffle(pairs)
    batches = [pairs[i * args.batch_size : (i + 1) * args.batch_size] for i in range(args.steps + 1)]
    setups = []
    for base in args.base:
        tok = AutoTokenizer.from_pretrained(base)
        model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=2, dtype=torch.float32)
        for name, p in model.named_parameters():
            if "embeddings.word_embeddings" in name:
                p.requires_grad_(False)
        model.train()
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        n_params = sum(p.numel() for p in model.parameters())
        setups.append((base, tok, model, opt, n_params, []))
    for step, batch in enumerate(batches):
        for _base, tok, model, opt, _, times in setups:
            feats = tok(
                [p.evidence for p in batch],
                [p.claim for p in batch],
                truncation="only_first",
                max_length=args.max_length,
                padding=True,
                return_tensors="pt",
            )
            y = torch.tensor([p.label for p in batch])
            t0 = time.perf_counter()
            loss = torch.nn.functional.cross_entropy(model(**feats).logits, y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if step > 0:  # the first step warms up allocators
                times.append(time.perf_counter() - t0)
    print(f"{'base':<48} {'params':>8} {'s/step (median)':>16} {'one v2 epoch':>14}")
    meds = []
    for base, _, _, _, n_params, times in setups:
        med = statistics.median(times)
        meds.append(med)
        print(f"{base[-48:]:<48} {n_params / 1e6:>7.1f}M {med:>16.2f} {med * EPOCH_STEPS / 3600:>12.1f} h")
    if len(meds) > 1:
        print(
            f"ratio: {args.base[1][-30:]} / {args.base[0][-30:]} = {meds[1] / meds[0]:.1f}x per step "
            f"({args.steps} steps each, batch {args.batch_size}, max length {args.max_length}, {args.threads} thread)"
        )


if __name__ == "__main__":
    main()
