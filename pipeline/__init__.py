"""citerag's answer pipeline, the floor of the layers: types, config, prompting, generator backends,
citations, the RAG loop. It imports no other package of ours (ARCHITECTURE.md).

Importing this package is cheap: torch, faiss, vllm and transformers are imported lazily by
the modules that need them (see ``tests/test_imports.py``).
"""

from pipeline.errors import CiteragError
from pipeline.types import AttributedAnswer, Citation, Generation, GenerationParams, Passage, Sentence

__all__ = [
    "AttributedAnswer",
    "Citation",
    "CiteragError",
    "Generation",
    "GenerationParams",
    "Passage",
    "Sentence",
]
__version__ = "0.2.0"
