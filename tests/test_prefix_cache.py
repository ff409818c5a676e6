"""Prefix-cached ablations (issue 13): ablation prompts go to the generator in prefix order and
vLLM reads its prefix cache for them, with the same scores as scoring every prompt from scratch.

The order and its mapping back are pinned with the fake generator (its scores are a hash of
prompt and token, so a prompt mapped to the wrong mask changes the numbers); the cache itself
runs on the tiny random Llama under the real in-process vLLM engine.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from fakes import FakeGenerator

from eval.saliency import answer_from_parts, citation_use_agreement, context_cite, leave_one_out, prepare
from eval.saliency.ablation import loo_masks, prefix_order_of, random_masks, score_masks
from pipeline.protocols import reuses_prompt_prefixes
from pipeline.types import AttributedAnswer, Passage

PASSAGES = tuple(
    Passage(f"d{i}", text, f"T{i}")
    for i, text in enumerate(
        [
            "The capital of France is Paris. Paris lies on the river Seine and has many museums. " * 2,
            "Water boils at one hundred degrees Celsius at sea level. It boils lower up a mountain. " * 2,
            "The moon orbits the earth about once every twenty seven days. Its light is sunlight. " * 2,
            "Berlin is the capital of Germany, Madrid of Spain and Rome of Italy. They are old cities. " * 2,
        ]
    )
)


def answers() -> list[AttributedAnswer]:
    return [
        answer_from_parts("What is the capital of France?", PASSAGES, "It is Paris [1]. Paris is on the Seine [1]."),
        answer_from_parts("When does water boil?", PASSAGES[1:] + PASSAGES[:1], "At one hundred degrees [1]."),
    ]


def test_prefix_order_puts_prompts_with_a_shared_prefix_together() -> None:
    docs = ["D1 paris. ", "D2 water. ", "D3 moon. "]
    prompts = []
    for q in ("Q: capital? ", "Q: boil? "):
        for keep in ((1, 1, 1), (0, 1, 1), (1, 0, 1), (1, 1, 0), (1, 0, 0)):
            prompts.append("Sys. " + q + "".join(d for d, k in zip(docs, keep) if k) + "A:")
    prompts.append(prompts[0])
    conts = ["x"] * (len(prompts) - 1) + ["y"]
    order = prefix_order_of(prompts, conts)
    assert sorted(order) == list(range(len(prompts)))
    sent = [prompts[i] for i in order]
    for p in prompts:  # every prefix of every prompt: the prompts that start with it form one run
        for n in range(1, len(p) + 1):
            hits = [k for k, s in enumerate(sent) if s.startswith(p[:n])]
            assert hits == list(range(hits[0], hits[-1] + 1)), (p[:n], sent)
    assert order.index(len(prompts) - 1) == order.index(0) + 1  # same prompt: by continuation


def test_score_masks_maps_prefix_ordered_scores_back_to_their_masks() -> None:
    fake = FakeGenerator()
    ctxs = [prepare(a, fake) for a in answers()]
    jobs = [(c, "passage", np.vstack([loo_masks(4), random_masks(8, 4, 1)])) for c in ctxs]
    jobs.append((ctxs[0], "sentence", random_masks(6, len(ctxs[0].sources("sentence")), 2)))
    plain = score_masks(fake, jobs, prefix_order=False)
    sent_plain = list(fake.scored)
    fake.scored.clear()
    ordered = score_masks(fake, jobs, prefix_order=True)
    assert fake.scored != sent_plain and fake.scored == sorted(sent_plain)  # reordered, same pairs
    for a, b in zip(plain, ordered):
        np.testing.assert_array_equal(a, b)
    # The default follows the generator's capability.
    assert not reuses_prompt_prefixes(fake)
    fake.scored.clear()
    score_masks(fake, jobs)
    assert fake.scored == sent_plain
    fake.reuses_prompt_prefixes = True  # type: ignore[attr-defined]
    fake.scored.clear()
    score_masks(fake, jobs, progress=True)
    assert fake.scored == sorted(sent_plain)


# -- the real engine -------------------------------------------------------------------------------


@pytest.fixture()
def cache_switch(tiny_vllm: Any) -> Any:
    """The session's tiny vLLM engine, with its cache switch restored afterwards."""
    before = tiny_vllm.reuses_prompt_prefixes
    yield tiny_vllm
    tiny_vllm.reuses_prompt_prefixes = before


def _run(gen: Any, cached: bool, fn: Any) -> tuple[Any, dict[str, int]]:
    gen.reuses_prompt_prefixes = cached
    gen.llm.reset_prefix_cache()
    before = dict(gen.score_cache_stats)
    out = fn()
    return out, {k: gen.score_cache_stats[k] - before[k] for k in before}


def test_vllm_reads_the_prefix_cache_with_the_same_scores(cache_switch: Any) -> None:
    gen = cache_switch
    assert gen.reuses_prompt_prefixes and gen.llm.llm_engine.vllm_config.cache_config.enable_prefix_caching
    ctxs = [prepare(a, gen) for a in answers()]
    for level in ("passage", "sentence"):

        def both(level: str = level) -> tuple[Any, Any]:
            return leave_one_out(gen, ctxs, level), context_cite(gen, ctxs, level, n_masks=12)  # type: ignore[arg-type]

        (loo_u, cc_u), off = _run(gen, False, both)
        (loo_c, cc_c), on = _run(gen, True, both)
        assert off["prompt_tokens"] == 0  # uncached: the cache was not read
        assert on["cached_tokens"] > 0.3 * on["prompt_tokens"]  # real reuse, not a no-op
        for u, c in zip(loo_u + cc_u, loo_c + cc_c):
            assert np.isfinite(c.scores).all()
            np.testing.assert_allclose(c.scores, u.scores, atol=1e-3)
        for u, c in zip(loo_u, loo_c):
            np.testing.assert_allclose(c.info["full_logprob"], u.info["full_logprob"], atol=1e-3)
    agg_u, _ = _run(gen, False, lambda: citation_use_agreement(gen, answers(), threshold=0.0))
    agg_c, _ = _run(gen, True, lambda: citation_use_agreement(gen, answers(), threshold=0.0))
    assert agg_c.to_dict() == agg_u.to_dict()


def test_vllm_rescores_requests_whose_cache_hit_reaches_the_continuation(cache_switch: Any) -> None:
    """The same pair twice in one call: the second finds the first's blocks cached past its
    prompt (a long continuation spans several blocks), so it is scored again without the cache."""
    gen = cache_switch
    cont = " ".join(["the moon orbits the earth"] * 3 * gen.block_size)[: 6 * gen.block_size]
    pairs = (["Question: where is Paris?"] * 2, [cont] * 2)
    plain, _ = _run(gen, False, lambda: gen.score(*pairs))
    cached, stats = _run(gen, True, lambda: gen.score(*pairs))
    assert stats["rescored"] >= 1
    assert len(cached[1]) == len(gen.tokenizer.encode(cont))
    np.testing.assert_allclose(cached, plain, atol=1e-3)


def test_async_engine_reads_the_prefix_cache_with_the_same_scores(tiny_model_dir: Any) -> None:
    """The HTTP server's engine: uncached first, then cached (reading what the uncached run
    left in the cache, so some hits reach into the continuation and are rescored)."""
    pytest.importorskip("vllm")
    from pipeline.generators.vllm_async import AsyncVLLMGenerator

    with AsyncVLLMGenerator(str(tiny_model_dir), max_model_len=2048) as gen:
        assert reuses_prompt_prefixes(gen)
        ctxs = [prepare(a, gen) for a in answers()]
        gen.reuses_prompt_prefixes = False
        plain = leave_one_out(gen, ctxs, "sentence")
        gen.reuses_prompt_prefixes = True
        cached = leave_one_out(gen, ctxs, "sentence")
    for u, c in zip(plain, cached):
        assert np.isfinite(c.scores).all()
        np.testing.assert_allclose(c.scores, u.scores, atol=1e-3)
