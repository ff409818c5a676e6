"""Interfaces between components. Everything takes its dependencies as constructor
arguments typed by these protocols, so tests can pass fakes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from pipeline.types import Generation, GenerationParams, Passage

if TYPE_CHECKING:
    import numpy as np

#: Any function from a batch of texts to a float matrix of shape (len(texts), dim).
Embedder = Callable[[list[str]], "np.ndarray"]


@runtime_checkable
class Retriever(Protocol):
    def retrieve(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        """Top-``k`` passages for each query, best first (batched)."""
        ...


@runtime_checkable
class CacheRetriever(Retriever, Protocol):
    """A retriever that can also rank a small set of candidates as it ranks its corpus.

    Speculative iterative retrieval (pipeline/iterative.py) guesses each round's passages with
    it from the passages a question has already retrieved. For candidates that include the
    real top-k, the result must equal ``retrieve``'s (same order, same ties); otherwise it is
    only a guess, which the real retriever then checks."""

    def retrieve_from(
        self, queries: Sequence[str], candidates: Sequence[Sequence[Passage]], k: int
    ) -> list[list[Passage]]:
        """Top-``k`` of ``candidates[i]`` for ``queries[i]``, best first (batched)."""
        ...


@runtime_checkable
class Tokenizer(Protocol):
    """The generator's tokenizer, as far as prompting needs it."""

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def apply_chat_template(self, messages: list[dict[str, str]]) -> str | None:
        """The chat-formatted prompt (generation prompt appended), or None without a template."""
        ...


@runtime_checkable
class Generator(Protocol):
    #: Context window in tokens (prompt + generated).
    max_context: int

    @property
    def tokenizer(self) -> Tokenizer: ...

    def generate(self, prompts: Sequence[str], params: GenerationParams) -> list[Generation]:
        """One generation per prompt (``params.n`` == 1) in input order (batched)."""
        ...

    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[list[float]]:
        """Log-probability of every token of ``continuations[i]`` after ``prompts[i]``."""
        ...


def reuses_prompt_prefixes(generator: object) -> bool:
    """Whether ``generator.score`` reuses the work of prompt prefixes it has already seen (a
    prefix / KV cache), so that callers with many prompts sharing long prefixes (ablations)
    should send them adjacent and batched. An optional capability, declared by a generator as
    ``reuses_prompt_prefixes = True`` (wrappers forward it); it never changes the scores."""
    return bool(getattr(generator, "reuses_prompt_prefixes", False))


#: (premise / evidence, hypothesis / claim)
Pair = tuple[str, str]


@runtime_checkable
class SupportJudge(Protocol):
    #: Support at or above which a pair counts as supported: the judge's own calibrated
    #: cut-off (from its card), so every caller decides with the same number unless told otherwise.
    threshold: float

    def judge(self, pairs: Sequence[Pair]) -> list[float]:
        """Probability that each evidence text supports (entails) its claim (batched)."""
        ...
