"""citerag's retrievers: corpus ingest and chunking, BM25, dense (sentence-transformers +
FAISS), hybrid (RRF), re-ranking, a LangChain adapter, and the persistent index.

Importing this package is cheap: the names below are loaded on first access, and bm25s,
faiss, torch, sentence_transformers and langchain_core only when a retriever needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from retrievers.bm25 import BM25Retriever
    from retrievers.chunking import split_passages
    from retrievers.dense import DenseRetriever, SentenceTransformerEmbedder
    from retrievers.hybrid import HybridRetriever, rrf_fuse
    from retrievers.index import CiteragIndex, build_index, load_index
    from retrievers.ingest import Document, load_documents
    from retrievers.langchain import LangChainRetriever
    from retrievers.rerank import CrossEncoderReranker, RerankingRetriever

_EXPORTS: dict[str, str] = {
    "Document": "retrievers.ingest",
    "load_documents": "retrievers.ingest",
    "split_passages": "retrievers.chunking",
    "BM25Retriever": "retrievers.bm25",
    "DenseRetriever": "retrievers.dense",
    "SentenceTransformerEmbedder": "retrievers.dense",
    "HybridRetriever": "retrievers.hybrid",
    "rrf_fuse": "retrievers.hybrid",
    "CrossEncoderReranker": "retrievers.rerank",
    "RerankingRetriever": "retrievers.rerank",
    "LangChainRetriever": "retrievers.langchain",
    "CiteragIndex": "retrievers.index",
    "build_index": "retrievers.index",
    "load_index": "retrievers.index",
}

# Spelled out rather than sorted(_EXPORTS) so linters and type checkers see the names imported
# under TYPE_CHECKING above as this package's public API; a test keeps it equal to _EXPORTS.
__all__ = [
    "BM25Retriever",
    "CiteragIndex",
    "CrossEncoderReranker",
    "DenseRetriever",
    "Document",
    "HybridRetriever",
    "LangChainRetriever",
    "RerankingRetriever",
    "SentenceTransformerEmbedder",
    "build_index",
    "load_documents",
    "load_index",
    "rrf_fuse",
    "split_passages",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'retrievers' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
