"""The one place that builds real components from ``Settings``: the CLI commands and the
HTTP server both call it, so a setting means the same everywhere. Everything else takes its
dependencies as constructor arguments."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pipeline.config import Settings
from pipeline.types import GenerationParams

if TYPE_CHECKING:
    from pipeline.protocols import Generator
    from pipeline.rag import RAGPipeline

log = logging.getLogger(__name__)


def build_generator(
    s: Settings, *, concurrent: bool = False, timeout: float | None = None, prefix_caching: bool = True
) -> Generator:
    """The generator ``s`` describes: the server at ``s.llm_url``, else ``s.backend`` in process.

    ``concurrent`` (the HTTP server) picks vLLM's async engine, which batches concurrent
    requests continuously (with automatic prefix caching unless ``prefix_caching`` is off);
    ``timeout`` bounds each call to an LLM server."""
    from pipeline.generators import make_generator

    if s.llm_url:
        # make_generator asks the server for its model id when the default name is given.
        opts: dict[str, Any] = {"timeout": timeout} if timeout is not None else {}
        return make_generator("openai", s.model, llm_url=s.llm_url, api_key=s.llm_api_key, **opts)
    if concurrent and s.backend == "vllm":
        from pipeline.generators.vllm_async import AsyncVLLMGenerator
        from pipeline.models import resolve_generator

        return AsyncVLLMGenerator(resolve_generator(s.model), dtype=s.dtype, max_model_len=s.max_model_len,
                                  enable_prefix_caching=prefix_caching)  # fmt: skip
    if concurrent and s.backend == "transformers":
        from pipeline.generators.hf import TransformersGenerator
        from pipeline.models import resolve_generator

        return TransformersGenerator(resolve_generator(s.model), dtype=s.dtype)
    return make_generator(s.backend, s.model, llm_url=None, dtype=s.dtype, max_model_len=s.max_model_len, seed=s.seed)


#: KV-cache block size of the in-process vLLM engine that scores ablations. vLLM reuses a cached
#: prefix in whole blocks (the CPU default is 128 tokens); an ablated prompt shares the full
#: prompt up to the removed passage, so smaller blocks reuse more of it. Measured on 3 NQ-open
#: answers (leave-one-out, SmolLM2 fp32): prefix-cache hit rate 0.34 -> 0.42 and 1.6x -> 1.8x
#: faster than no caching going from 128 to 32, with no slower prefill (bench/bench_prefix_cache.py).
SCORING_BLOCK_SIZE = 32


@contextlib.contextmanager
def scoring_generator(
    backend: str, model: str, llm_url: str | None, llm_api_key: str | None, max_model_len: int
) -> Iterator[Generator]:
    """The generator that scores ablations (fp32 in process, or ``llm_url``), closed on exit."""
    from pipeline.generators import make_generator

    if llm_url:
        generator = make_generator("openai", model, llm_url=llm_url, api_key=llm_api_key)
    else:
        extra = {"block_size": SCORING_BLOCK_SIZE} if backend == "vllm" else {}
        generator = make_generator(backend, model, dtype="float32", max_model_len=max_model_len, **extra)
    try:
        yield generator
    finally:
        close = getattr(generator, "close", None)
        if callable(close):
            close()


def check_settings(s: Settings) -> None:
    """Refuse a combination that cannot work before any model loads."""
    if s.speculative and not s.iterative:
        from pipeline.errors import ConfigError

        raise ConfigError("--speculative speeds up the iterative loop: add --iterative, or drop --speculative")
    if s.citations == "constrained" and not s.llm_url and s.backend not in ("vllm", "openai"):
        from pipeline.errors import ConfigError
        from pipeline.generators.base import NO_STRUCTURED_OUTPUT_HINT

        raise ConfigError(
            f"--citations constrained does not work with --backend {s.backend}: {NO_STRUCTURED_OUTPUT_HINT}"
        )


def build_pipeline(
    s: Settings, generator: Generator | None = None, *, index: Any = None, retriever: Any = None
) -> RAGPipeline:
    """Load the index and its embedder, start (or connect to) the generator, and put the RAG
    pipeline together. ``generator``, ``index`` and ``retriever`` replace the ones ``s``
    describes (the server passes its own, shared and locked)."""
    from pipeline.citations import EmbeddingPostHocCiter
    from pipeline.prompting import PromptConfig
    from pipeline.rag import IterativeConfig, RAGPipeline
    from retrievers.index import load_index

    if generator is None:
        check_settings(s)
    index = index if index is not None else load_index(s.index)
    embedder = index.embedder() if (s.retriever != "bm25" or s.post_hoc) else None
    if retriever is None:
        retriever = index.retriever(s.retriever, embedder=embedder, reranker=s.reranker, rerank_depth=s.rerank_depth)
    gen = generator if generator is not None else build_generator(s)
    return RAGPipeline(
        retriever=retriever,
        generator=gen,
        k=s.k,
        params=GenerationParams(max_tokens=s.max_tokens, temperature=s.temperature, seed=s.seed),
        prompt=PromptConfig(max_doc_tokens=s.max_doc_tokens),
        post_hoc=EmbeddingPostHocCiter(embedder, s.post_hoc_min_similarity) if (s.post_hoc and embedder) else None,
        iterative=IterativeConfig(
            s.stride, s.query_tokens, speculative=s.speculative, spec_stride=s.spec_stride, prefetch=s.prefetch
        )
        if s.iterative
        else None,
        batch_size=s.batch_size,
        citations=s.citations,
    )
