"""Prefix-cached ablations (issue 13): the agreement step of ``citerag eval --agreement`` with
and without vLLM's prefix cache, side by side in one run, on the same answers and engine.

The answers are read as ``eval`` reads them (``read_predictions``, ALCE's first-line cut), and
:func:`app.cli_eval.agreement_section` runs exactly as ``eval --agreement`` runs it (leave-one-out
by default, SmolLM2-135M fp32 in process, as ``app.factory.scoring_generator`` builds it: KV blocks of 32 tokens). The
judge part of ``eval`` is left out (a constant judge): it does not touch the generator.

* uncached: every masked prompt prefilled from scratch, in the order the masks come (today);
* cached: the same prompts in prefix order, reading vLLM's prefix cache (the new default).

The cache is emptied before each run, so the cached run reuses only what it computes itself.
Printed: seconds of each, the ratio, the prefix-cache hit rate (cached prompt tokens / prompt
tokens, from vLLM's ``num_cached_tokens``), whether the agreement figures are identical and
the largest difference of any answer token's log-prob between the two runs.

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python bench/bench_prefix_cache.py --pred bench/out/agree_after100.jsonl
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_PRED = ROOT / "bench" / "out" / "agree_after100.jsonl"


class Recorder:
    """The generator, with every scored pair's token log-probs kept (``runs[name]``)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.log: dict[tuple[str, str], list[float]] = {}

    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[list[float]]:
        out = self.inner.score(prompts, continuations)
        self.log.update(zip(zip(prompts, continuations), out))
        return out

    def __getattr__(self, name: str) -> Any:
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pred", type=Path, default=DEFAULT_PRED, help="`citerag ask --out` JSONL (or an ALCE file)")
    ap.add_argument("--answers", type=int, default=100, help="first N answers of the file")
    ap.add_argument("--method", choices=("loo", "contextcite"), default="loo")
    ap.add_argument("--block-size", type=int, default=None, help="KV-cache block size (default: eval's, 32)")
    ap.add_argument("--repeat", type=int, default=1, help="interleaved pairs of runs (best of each kept)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import numpy as np

    from app.cli_eval import agreement_section
    from app.factory import scoring_generator
    from eval.formats import read_predictions
    from eval.scoring import EvalConfig, evaluate
    from pipeline.generators.vllm_local import VLLMGenerator
    from pipeline.models import resolve_generator

    preds = read_predictions(str(args.pred))
    examples = list(preds.examples)[: args.answers]
    evaluation = evaluate(examples, lambda pairs: [1.0] * len(pairs), EvalConfig(threshold=0.5, attribution=False))
    t0 = time.perf_counter()
    stack = contextlib.ExitStack()
    if args.block_size:
        gen = VLLMGenerator(resolve_generator(None), dtype="float32", max_model_len=2048, block_size=args.block_size)
        stack.callback(gen.close)
    else:  # the engine `eval --agreement` builds
        gen = stack.enter_context(scoring_generator("vllm", None, None, None, 2048))
    print(
        f"engine: SmolLM2-135M fp32, in process, prefix caching "
        f"{gen.llm.llm_engine.vllm_config.cache_config.enable_prefix_caching}, block size {gen.block_size} "
        f"(started in {time.perf_counter() - t0:.1f}s)"
    )
    gen.score(["Warm-up."], [" ok"])

    times: dict[str, list[float]] = {"uncached": [], "cached": []}
    logs: dict[str, dict[tuple[str, str], list[float]]] = {}
    sections: dict[str, Any] = {}
    stats: dict[str, dict[str, int]] = {}
    for r in range(args.repeat):
        for mode in ("uncached", "cached") if r % 2 == 0 else ("cached", "uncached"):
            rec = Recorder(gen)
            gen.reuses_prompt_prefixes = mode == "cached"
            gen.llm.reset_prefix_cache()
            before = dict(gen.score_cache_stats)
            t = time.perf_counter()
            section, per_answer = agreement_section(evaluation, rec, method=args.method)
            times[mode].append(time.perf_counter() - t)
            logs[mode], sections[mode] = rec.log, (section, per_answer)
            stats[mode] = {k: gen.score_cache_stats[k] - before[k] for k in before}
            print(f"run {r + 1} {mode}: {times[mode][-1]:.1f}s, {len(rec.log)} prompts", flush=True)
    stack.close()

    u, c = min(times["uncached"]), min(times["cached"])
    st = stats["cached"]
    hit = st["cached_tokens"] / st["prompt_tokens"] if st["prompt_tokens"] else float("nan")
    same_keys = logs["uncached"].keys() == logs["cached"].keys()
    diff = max(
        (float(np.max(np.abs(np.subtract(a, logs["cached"][k])))) for k, a in logs["uncached"].items() if a),
        default=0.0,
    )
    sec_u, sec_c = sections["uncached"][0], sections["cached"][0]
    same_figures = json.dumps(sec_u, sort_keys=True) == json.dumps(sec_c, sort_keys=True)
    n_tokens = sum(len(gen.tokenizer.encode(p)) for p, _ in logs["cached"])
    print(f"\n`eval --agreement` ({args.method}) on {len(examples)} answers of {args.pred.name}, best of {args.repeat}")
    print("| path | prompts scored | prompt tokens | cache hit rate | seconds |\n|---|---|---|---|---|")
    print(f"| without prefix caching (today) | {len(logs['uncached'])} | {n_tokens} | - | {u:.1f} |")
    print(
        f"| prefix order + prefix cache (new default) | {len(logs['cached'])} | {n_tokens} | {hit:.3f} "
        f"({st['rescored']} rescored) | {c:.1f} |"
    )
    print(
        f"\nspeed-up {u / c:.2f}x; same prompts: {same_keys}; largest |difference| of an answer token's log-prob: "
        f"{diff:.2e}; agreement figures identical: {same_figures}"
        f" and per sentence: {sections['uncached'][1] == sections['cached'][1]}"
    )
    keys = ("sentences", "cited", "used", "cited_but_unused_rate", "used_but_uncited_rate", "exact_rate", "skipped")
    print("figures: " + ", ".join(f"{k}={sec_c.get(k)}" for k in keys))


if __name__ == "__main__":
    main()
