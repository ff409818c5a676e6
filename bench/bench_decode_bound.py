"""The generator's batched decoding against this machine's compute bound (issue 13, "the limit").

Two measurements in one run:

* the machine: float32 matrix-multiply throughput (torch, 2048x2048, the thread counts given),
  a measured ceiling for dense float32 work here rather than a datasheet figure;
* the generator: SmolLM2-135M through the in-process vLLM engine (fp32, greedy), B prompts at
  once for each batch size, ``--max-tokens`` new tokens each; generated tokens per second of the
  whole ``generate`` call (short prompts, so prefill is a small part).

Estimate of the bound: a decoder forward pass costs about 2 FLOPs per parameter per token
(multiply-add), plus attention over the context (4 x layers x d_model x context per token,
small at these lengths), so ``tokens/s at the bound = measured FLOP/s / FLOPs per token``.
The printed share is how much of that the engine reaches; the rest is the headroom (memory
traffic of the weights at small batches, the scheduler, sampling, Python).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_decode_bound.py [--batches 1,8,32,64] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOPICS = ["a lighthouse keeper", "a river town", "a bridge builder", "an old castle", "a mountain village",
          "a ship's cook", "a desert caravan", "a clockmaker"]  # fmt: skip


def matmul_flops(threads: int, n: int = 2048, repeats: int = 5) -> float:
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def _numel(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 32, 64])
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--threads", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2])
    args = ap.parse_args()

    import torch

    peak = {t: matmul_flops(t) for t in args.threads}
    for t, f in peak.items():
        print(f"torch float32 matmul 2048^3, {t} thread(s): {f / 1e9:.1f} GFLOP/s")
    torch.set_num_threads(max(args.threads))

    import json

    from safetensors import safe_open
    from transformers import AutoTokenizer

    from pipeline.generators import make_generator
    from pipeline.models import resolve_generator
    from pipeline.types import GenerationParams

    model_dir = Path(resolve_generator(None))
    n_params = 0
    for f in sorted(model_dir.glob("*.safetensors")):
        with safe_open(str(f), "pt") as st:
            for name in st.keys():
                n_params += _numel(st.get_slice(name).get_shape())
    config = json.loads((model_dir / "config.json").read_text())
    layers, d_model = config["num_hidden_layers"], config["hidden_size"]
    print(f"model {model_dir.name}: {n_params:,} parameters, {layers} layers, d_model {d_model}")
    chat = AutoTokenizer.from_pretrained(model_dir)

    def prompt(text: str) -> str:  # the instruct model's own chat template, as answering uses
        return chat.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)

    gen = make_generator("vllm", None)
    params = GenerationParams(max_tokens=args.max_tokens)
    gen.generate([prompt("Write a story about a cat.")], params)  # warm-up
    print(f"{'batch':>5} {'tokens':>7} {'seconds':>8} {'tokens/s':>9} {'GFLOP/s':>8} {'share of 1-thread':>18} "
          f"{'share of all':>13}")  # fmt: skip
    for b in args.batches:
        prompts = [prompt(f"Write a long story about {TOPICS[i % len(TOPICS)]} (number {i}).") for i in range(b)]
        t = time.perf_counter()
        outs = gen.generate(prompts, params)
        dt = time.perf_counter() - t
        tokens = sum(len(o.token_ids) or len(gen.tokenizer.encode(o.text)) for o in outs)
        prompt_tokens = sum(len(gen.tokenizer.encode_prompt(p)) for p in prompts) / b
        context = prompt_tokens + tokens / b / 2  # mean context length while decoding
        flops_per_token = 2 * n_params + 4 * layers * d_model * context
        achieved = tokens / dt * flops_per_token
        print(f"{b:>5} {tokens:>7} {dt:>8.2f} {tokens / dt:>9.1f} {achieved / 1e9:>8.2f} "
              f"{achieved / peak[min(args.threads)]:>18.3f} {achieved / peak[max(args.threads)]:>13.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
