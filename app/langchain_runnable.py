"""citerag inside LangChain: the index as a ``BaseRetriever``, the ask pipeline as a ``Runnable``.

* :class:`CiteragRetriever`: any citerag ``Retriever`` (or an index folder, via
  :meth:`CiteragRetriever.from_index`) as a LangChain retriever. Documents carry ``doc_id``,
  ``title``, ``start``, ``end``, ``score`` and ``pid`` metadata, so
  :class:`retrievers.langchain.LangChainRetriever` turns them back into the same passages.
* :class:`CiteragAskRunnable`: ``RAGPipeline.ask`` as a ``Runnable``. Input: a question
  string or ``{"question": ...}``; output: the ``citerag ask --json`` dict. ``batch`` answers
  all questions in one batched pipeline call; ``stream`` yields ``{"token": ...}`` chunks as
  the answer is generated, then one chunk with the whole answer (LangChain adds dict chunks
  key by key, so the sum of the chunks is the answer plus ``token``, the streamed text).
* :class:`CiteragEmbeddings`: a citerag embedder (``list[str] -> ndarray``) as LangChain
  ``Embeddings``, to build LangChain vector stores with the index's own embedder.

The other direction (any LangChain retriever or vector store as citerag's retriever) is
:class:`retrievers.langchain.LangChainRetriever`. This module imports ``langchain_core``;
nothing in ``pipeline`` imports it.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.utils import AddableDict
from pydantic import ConfigDict

from pipeline.errors import CiteragError, InputError
from pipeline.types import AttributedAnswer, Passage

_DONE = object()


def passage_document(p: Passage) -> Document:
    """A passage as a LangChain ``Document`` (metadata: doc_id, title, start, end, score, pid)."""
    return Document(page_content=p.text, metadata=p.to_dict(text=False, pid=True), id=p.pid or None)


class CiteragRetriever(BaseRetriever):
    """A citerag ``Retriever`` as a LangChain ``BaseRetriever`` returning ``k`` Documents."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    retriever: Any
    k: int = 5

    @classmethod
    def from_index(
        cls, index_dir: str | Path, kind: str = "hybrid", k: int = 5, reranker: str | None = None
    ) -> CiteragRetriever:
        """The retriever of ``kind`` (hybrid, dense, bm25) over the index at ``index_dir``."""
        from retrievers.index import load_index

        return cls(retriever=load_index(index_dir).retriever(kind, reranker=reranker), k=k)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return [passage_document(p) for p in self.retriever.retrieve([query], self.k)[0]]

    def batch(
        self,
        inputs: list[str],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Any]:
        """All queries in one batched citerag ``retrieve`` call (not one thread per query)."""
        if return_exceptions or kwargs or not inputs:
            return super().batch(inputs, config, return_exceptions=return_exceptions, **kwargs)
        return [[passage_document(p) for p in ps] for ps in self.retriever.retrieve(list(inputs), self.k)]


class CiteragEmbeddings(Embeddings):
    """A citerag embedder (``list[str] -> (n, dim) array``) as LangChain ``Embeddings``."""

    def __init__(self, embedder: Any) -> None:
        self.embedder = embedder

    @classmethod
    def from_name(cls, name: str | None = None) -> CiteragEmbeddings:
        """The sentence-transformers embedder ``name`` (default: the packaged all-MiniLM-L6-v2)."""
        from pipeline.models import DEFAULT_EMBEDDER
        from retrievers.dense import SentenceTransformerEmbedder

        return cls(SentenceTransformerEmbedder(name or DEFAULT_EMBEDDER))

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        return [[float(x) for x in row] for row in self.embedder(list(texts))]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def _question(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("question"), str):
        return value["question"]
    raise InputError(f"the input must be a question string or {{'question': ...}}, not {type(value).__name__}")


class CiteragAskRunnable(Runnable[Any, dict[str, Any]]):
    """``RAGPipeline.ask`` as a LangChain ``Runnable`` (optionally with ``ask --verify``).

    ``judge`` (a name, a path or a ``SupportJudge``) is loaded on the first verified call.
    """

    name: str | None = "citerag-ask"

    def __init__(self, pipeline: Any, *, verify: bool = False, judge: Any = "default") -> None:
        self.pipeline = pipeline
        self.verify = verify
        self._judge = judge
        self._lock = threading.Lock()

    @classmethod
    def from_index(
        cls, index_dir: str | Path, *, verify: bool = False, judge: Any = "default", **settings: Any
    ) -> CiteragAskRunnable:
        """Build the pipeline like ``citerag ask --index DIR`` (``settings``: ``pipeline.config.Settings`` fields)."""
        from app.factory import build_pipeline
        from pipeline.config import Settings

        return cls(build_pipeline(Settings(index=index_dir, **settings)), verify=verify, judge=judge)

    # -- helpers ----------------------------------------------------------------------------
    def _judged(self, answers: list[AttributedAnswer]) -> list[AttributedAnswer]:
        if not self.verify or not answers:
            return answers
        from verifiers.rarr import build_reviser
        from verifiers.verify import verify_answers

        with self._lock:
            if isinstance(self._judge, str):
                from verifiers.judges import load_judge

                self._judge = load_judge(self._judge, generator=self.pipeline.generator)
        judge = self._judge
        return verify_answers(answers, judge, build_reviser(self.pipeline.retriever, self.pipeline.generator, judge))

    def _ask(self, value: Any) -> dict[str, Any]:
        answer = self.pipeline.ask(_question(value))
        return self._judged([answer])[0].to_dict()

    # -- Runnable -----------------------------------------------------------------------------
    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> dict[str, Any]:
        return self._call_with_config(self._ask, input, config, run_type="chain")

    def batch(
        self,
        inputs: list[Any],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Any]:
        """Every question in one batched pipeline call (retrieval and generation batched)."""
        if not inputs:
            return []
        results: list[Any] = [None] * len(inputs)
        questions: list[str] = []
        where: list[int] = []
        for i, value in enumerate(inputs):
            try:
                questions.append(_question(value))
                where.append(i)
            except CiteragError as exc:
                results[i] = exc
        answers = self.pipeline.ask_many(questions, progress=False) if questions else []
        good = [(i, a) for i, a in zip(where, answers) if isinstance(a, AttributedAnswer)]
        judged = self._judged([a for _, a in good])
        for i, a in zip(where, answers):
            results[i] = a
        for (i, _), a in zip(good, judged):
            results[i] = a.to_dict()
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors and not return_exceptions:
            raise errors[0]
        return results

    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """``{"token": text}`` chunks while the answer is generated, then the whole answer."""
        from pipeline.streaming import ask_streaming

        question = _question(input)
        chunks: queue.Queue[Any] = queue.Queue()
        stop = threading.Event()

        def work() -> None:
            try:
                answer = ask_streaming(self.pipeline, question, lambda t: chunks.put(AddableDict(token=t)), stop.is_set)
                chunks.put(AddableDict(self._judged([answer])[0].to_dict()))
            except BaseException as exc:  # noqa: BLE001 - re-raised in the consuming thread
                chunks.put(exc)
            finally:
                chunks.put(_DONE)

        worker = threading.Thread(target=work, name="citerag-ask-stream", daemon=True)
        worker.start()
        try:
            while (item := chunks.get()) is not _DONE:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            worker.join()

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        chunks = self.stream(input, config, **kwargs)
        try:
            while (item := await loop.run_in_executor(None, next, chunks, _DONE)) is not _DONE:
                yield item
        finally:
            await loop.run_in_executor(None, chunks.close)


__all__: Sequence[str] = ("CiteragAskRunnable", "CiteragEmbeddings", "CiteragRetriever", "passage_document")
