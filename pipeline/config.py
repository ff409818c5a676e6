"""Settings for building a pipeline (pydantic: this is an edge, shared by the CLI and HTTP)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.models import DEFAULT_GENERATOR

Backend = Literal["vllm", "openai", "transformers"]
RetrieverKind = Literal["hybrid", "dense", "bm25"]


class Settings(BaseModel):
    """Everything ``build_pipeline`` needs. Defaults are the embedded offline setup."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    index: Path
    retriever: RetrieverKind = "hybrid"
    k: int = Field(5, ge=1, le=100)
    reranker: str | None = None
    rerank_depth: int = Field(20, ge=1)
    backend: Backend = "vllm"
    model: str = DEFAULT_GENERATOR
    #: OpenAI-compatible server(s): one URL, or several comma-separated (``--llm-url`` repeated)
    #: serving the same model, spread by least outstanding requests (generators/openai_pool.py).
    llm_url: str | None = None
    #: Bearer token of the OpenAI-compatible server at ``llm_url`` (``--llm-api-key``).
    llm_api_key: str | None = None
    max_model_len: int = Field(2048, ge=64)
    dtype: str = "float32"
    max_tokens: int = Field(128, ge=1)
    temperature: float = Field(0.0, ge=0.0)
    seed: int = 0
    max_doc_tokens: int = Field(200, ge=8)
    post_hoc: bool = True
    post_hoc_min_similarity: float = 0.3
    iterative: bool = False
    stride: int = Field(32, ge=1)
    query_tokens: int = Field(32, ge=1)
    #: Iterative mode: speculate retrievals from each question's cache, verify in batches
    #: (pipeline/iterative.py; the answers are unchanged under greedy decoding).
    speculative: bool = False
    spec_stride: int = Field(3, ge=1, le=8)
    prefetch: int = Field(20, ge=0)
    batch_size: int = Field(64, ge=1)
    #: How answer sentences get citations (pipeline/constrained.py); recorded as "citation_mode".
    citations: Literal["auto", "post-hoc", "constrained", "use-aware"] = "auto"
