"""The one place that builds real components from ``Settings``. Everything else takes its
dependencies as constructor arguments."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pipeline.config import Settings
from pipeline.types import GenerationParams

if TYPE_CHECKING:
    from pipeline.protocols import Generator
    from pipeline.rag import RAGPipeline

log = logging.getLogger(__name__)


def build_generator(s: Settings) -> Generator:
    from pipeline.generators import make_generator

    if s.llm_url:
        # make_generator asks the server for its model id when the default name is given.
        return make_generator("openai", s.model, llm_url=s.llm_url, api_key=s.api_key)
    return make_generator(s.backend, s.model, llm_url=None, dtype=s.dtype, max_model_len=s.max_model_len, seed=s.seed)


def build_pipeline(s: Settings, generator: Generator | None = None) -> RAGPipeline:
    """Load the index and its embedder, start (or connect to) the generator."""
    from pipeline.citations import EmbeddingPostHocCiter
    from pipeline.prompting import PromptConfig
    from pipeline.rag import IterativeConfig, RAGPipeline
    from retrievers.index import load_index

    if s.citations == "constrained" and not s.llm_url and s.backend not in ("vllm", "openai") and generator is None:
        from pipeline.errors import ConfigError
        from pipeline.generators.base import NO_STRUCTURED_OUTPUT_HINT

        raise ConfigError(f"--citations constrained does not work with --backend {s.backend}: {NO_STRUCTURED_OUTPUT_HINT}")
    index = load_index(s.index)
    embedder = index.embedder() if (s.retriever != "bm25" or s.post_hoc) else None
    retriever = index.retriever(s.retriever, embedder=embedder, reranker=s.reranker, rerank_depth=s.rerank_depth)
    gen = generator if generator is not None else build_generator(s)
    return RAGPipeline(
        retriever=retriever,
        generator=gen,
        k=s.k,
        params=GenerationParams(max_tokens=s.max_tokens, temperature=s.temperature, seed=s.seed),
        prompt=PromptConfig(max_doc_tokens=s.max_doc_tokens),
        post_hoc=EmbeddingPostHocCiter(embedder, s.post_hoc_min_similarity) if (s.post_hoc and embedder) else None,
        iterative=IterativeConfig(s.stride, s.query_tokens) if s.iterative else None,
        batch_size=s.batch_size,
        citations=s.citations,
    )
