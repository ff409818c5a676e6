"""LangChain integration: a citerag index as a BaseRetriever, LangChain's in-memory and FAISS
vector stores as citerag retrievers, and the ask pipeline as a Runnable (through real vLLM)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain_core")

from pipeline.types import Passage  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "pipeline" / "sample_corpus"
BRIDGE = "When did the Golden Gate Bridge open?"
CURIE = "Who discovered polonium?"


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from retrievers.index import build_index, load_index

    out = tmp_path_factory.mktemp("lc-idx") / "sample"
    build_index(str(SAMPLE), str(out), progress=False)
    return load_index(out)


@pytest.fixture(scope="module")
def embeddings(index: Any) -> Any:
    from app.langchain_runnable import CiteragEmbeddings

    return CiteragEmbeddings(index.embedder())


def source_text(doc_id: str) -> str:
    from retrievers.ingest import load_documents

    docs, _ = load_documents(str(SAMPLE))
    return next(d.text for d in docs if d.doc_id == doc_id)


# -- citerag -> LangChain ------------------------------------------------------------------


def test_index_as_langchain_retriever(index: Any) -> None:
    from langchain_core.retrievers import BaseRetriever

    from app.langchain_runnable import CiteragRetriever

    lc = CiteragRetriever.from_index(index.path, kind="hybrid", k=3)
    assert isinstance(lc, BaseRetriever)
    docs = lc.invoke(BRIDGE)
    assert len(docs) == 3 and docs[0].metadata["doc_id"] == "golden_gate_bridge.md"
    for d in docs:
        m = d.metadata
        assert {"doc_id", "title", "start", "end", "score", "pid"} <= set(m)
        assert source_text(m["doc_id"])[m["start"] : m["end"]] == d.page_content
    assert [d.metadata["score"] for d in docs] == sorted((d.metadata["score"] for d in docs), reverse=True)
    both = lc.batch([BRIDGE, CURIE])
    assert both[0] == docs and both[1] == lc.invoke(CURIE)
    assert both[1][0].metadata["doc_id"] == "marie_curie.txt"


def test_round_trip_keeps_passages(index: Any) -> None:
    from app.langchain_runnable import CiteragRetriever
    from retrievers.langchain import LangChainRetriever

    native = index.retriever("bm25")
    back = LangChainRetriever(CiteragRetriever(retriever=native, k=4))
    assert back.retrieve([BRIDGE, CURIE], 4) == native.retrieve([BRIDGE, CURIE], 4)


# -- LangChain vector stores -> citerag ------------------------------------------------------


def _documents(index: Any) -> list[Any]:
    from app.langchain_runnable import passage_document

    return [passage_document(p) for p in index.passages]


def _check_store(store: Any, index: Any) -> None:
    from retrievers.langchain import LangChainRetriever

    r = LangChainRetriever(store)
    assert r.is_vector_store
    hits = r.retrieve([BRIDGE, CURIE, "How tall is Mount Everest?"], 3)
    assert [len(h) for h in hits] == [3, 3, 3]
    assert [h[0].doc_id for h in hits] == ["golden_gate_bridge.md", "marie_curie.txt", "mount_everest.md"]
    for h in hits:
        scores = [p.score for p in h]
        assert scores == sorted(scores, reverse=True) and 0 < scores[0] <= 1.0
        for p in h:  # spans survive the trip through the store's metadata
            assert isinstance(p, Passage) and source_text(p.doc_id)[p.start : p.end] == p.text
    assert [len(h) for h in r.retrieve([BRIDGE], 1)] == [1]
    # A store plugs into the answer pipeline like any citerag retriever.
    from fakes import FakeGenerator

    from pipeline.rag import RAGPipeline

    pipe = RAGPipeline(retriever=r, generator=FakeGenerator(["It opened in 1937 [1]."]), k=2)
    answer = pipe.ask(BRIDGE)
    assert answer.sentences[0].citations == (1,)
    assert answer.citation(1).passage.doc_id == "golden_gate_bridge.md"


def test_langchain_start_index_gives_true_spans_and_chunks_never_collide() -> None:
    """LangChain's splitters record ``start_index`` (``add_start_index=True``): it is the span.
    Without any offset, two same-length chunks of one ``source`` used to get the same span
    0..len and so the same citation key."""
    from langchain_core.documents import Document
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from retrievers.langchain import to_passage

    source = "aaaa bbbb. " * 30 + "cccc dddd. " * 30
    splitter = RecursiveCharacterTextSplitter(chunk_size=60, chunk_overlap=0, add_start_index=True)
    chunks = splitter.create_documents([source], metadatas=[{"source": "notes.txt"}])
    passages = [to_passage(d) for d in chunks]
    assert len(passages) > 3 and all(p.doc_id == "notes.txt" for p in passages)
    assert all(source[p.start : p.end] == p.text for p in passages)
    assert len({p.key for p in passages}) == len(passages)

    same_length = [
        Document("first chunk.", metadata={"source": "a.md"}),
        Document("other chunk.", metadata={"source": "a.md"}),
    ]
    a, b = (to_passage(d) for d in same_length)
    assert a.key != b.key and a.doc_id.startswith("a.md#") and (a.start, a.end) == (0, len("first chunk."))
    # An explicit id or start wins: the chunk is then named as given.
    assert to_passage(Document("x", metadata={"source": "a.md", "start": 5})).key == ("a.md", 5, 6)
    assert to_passage(Document("x", metadata={"doc_id": "d1", "source": "a.md"})).key == ("d1", 0, 1)


def test_pages_cross_to_and_from_langchain_counted_from_one() -> None:
    from langchain_core.documents import Document

    from app.langchain_runnable import passage_document
    from pipeline.types import Passage
    from retrievers.langchain import to_passage

    # Ours round-trip as they are (1-based, with the last page when the passage runs onto it).
    for page, end in ((2, 3), (4, None)):
        p = Passage("r.pdf", "text", "R", 0.5, 10, 14, page=page, page_end=end)
        back = to_passage(passage_document(p))
        assert (back.page, back.page_end) == (page, end)
    # LangChain's PDF loaders count `page` from 0 and give the printed number as `page_label`.
    assert to_passage(Document("x", metadata={"source": "r.pdf", "page": 0})).page == 1
    assert to_passage(Document("x", metadata={"source": "r.pdf", "page": 4, "page_label": "7"})).page == 7
    assert to_passage(Document("x", metadata={"source": "r.pdf", "page": 1, "page_label": "iii"})).page == 2
    assert to_passage(Document("x", metadata={"source": "notes.txt"})).page is None


def test_in_memory_vector_store_as_citerag_retriever(index: Any, embeddings: Any) -> None:
    from langchain_core.vectorstores import InMemoryVectorStore

    store = InMemoryVectorStore(embeddings)
    store.add_documents(_documents(index))
    _check_store(store, index)


def test_faiss_vector_store_as_citerag_retriever(index: Any, embeddings: Any) -> None:
    pytest.importorskip("langchain_community")
    from langchain_community.vectorstores import FAISS
    from langchain_community.vectorstores.utils import DistanceStrategy

    store = FAISS.from_documents(_documents(index), embeddings, distance_strategy=DistanceStrategy.MAX_INNER_PRODUCT)
    _check_store(store, index)
    # Metadata filters pass through to the store.
    from retrievers.langchain import LangChainRetriever

    only = LangChainRetriever(store, search_kwargs={"filter": {"doc_id": "mount_everest.md"}})
    assert {p.doc_id for p in only.retrieve([BRIDGE], 2)[0]} == {"mount_everest.md"}


# -- the ask pipeline as a Runnable (real vLLM server over the tiny model) ----------------------


@pytest.fixture(scope="module")
def runnable(index: Any, tiny_vllm_server: Any) -> Any:
    from app.langchain_runnable import CiteragAskRunnable

    r = CiteragAskRunnable.from_index(index.path, llm_url=tiny_vllm_server.url, max_tokens=16, retriever="bm25")
    yield r
    r.pipeline.generator.close()


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in ("timings", "token")}


def test_runnable_invoke_batch_stream(runnable: Any) -> None:
    from langchain_core.runnables import Runnable, RunnableLambda

    assert isinstance(runnable, Runnable)
    one = runnable.invoke(BRIDGE)
    assert one["question"] == BRIDGE and one["passages"][0]["doc_id"] == "golden_gate_bridge.md"
    assert _plain(one) == _plain(runnable.pipeline.ask(BRIDGE).to_dict())
    assert _plain(runnable.invoke({"question": BRIDGE})) == _plain(one)

    many = runnable.batch([BRIDGE, {"question": CURIE}])
    assert [_plain(a) for a in many] == [_plain(one), _plain(runnable.invoke(CURIE))]
    with pytest.raises(Exception, match="empty"):
        runnable.batch([BRIDGE, "  "])
    mixed = runnable.batch([BRIDGE, "  "], return_exceptions=True)
    assert _plain(mixed[0]) == _plain(one) and isinstance(mixed[1], Exception)

    chunks = list(runnable.stream(BRIDGE))
    # Tokens stream piece by piece post hoc, sentence by sentence when constrained (the default
    # on vLLM; the tiny model's answer may be one sentence).
    assert len(chunks) >= (2 if one["citation_mode"] == "constrained" else 3)
    assert all(set(c) == {"token"} for c in chunks[:-1]) and "answer" in chunks[-1]
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    assert total["token"].strip() == one["answer"] and _plain(total) == _plain(one)

    async def collect() -> list[Any]:
        return [c async for c in runnable.astream(CURIE)]

    achunks = asyncio.run(collect())
    assert _plain(achunks[-1]) == _plain(runnable.invoke(CURIE))

    chain = runnable | RunnableLambda(lambda a: [c["doc_id"] for c in a["passages"]])
    assert chain.invoke(BRIDGE)[0] == "golden_gate_bridge.md"
