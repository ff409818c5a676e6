"""The persistent index: build + load + retrieve, atomic writes, clear errors."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from fakes import FakeEmbedder
from retriever_fixtures import TOPICS, build_fake_index, doc_id_of, minilm_embedder, write_corpus

from pipeline.errors import (
    ConfigError,
    CorpusError,
    IndexIncompatibleError,
    IndexMissingError,
    InputError,
)
from pipeline.models import DEFAULT_EMBEDDER
from retrievers.bm25 import BM25Retriever
from retrievers.dense import DenseRetriever, SentenceTransformerEmbedder
from retrievers.hybrid import HybridRetriever
from retrievers.index import (
    FORMAT_VERSION,
    build_index,
    load_index,
    progress_enabled,
)
from retrievers.rerank import RerankingRetriever

QUERIES = ["queen bees collect nectar", "Alexander Fleming discovered an antibiotic"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


def _snapshot(index_dir: Path) -> tuple[dict, list, list]:
    idx = load_index(index_dir)
    hybrid = idx.retriever("hybrid", embedder=FakeEmbedder())
    return idx.manifest, idx.passages, hybrid.retrieve(QUERIES, 5)


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def _version_dir(index_dir: Path) -> Path:
    """The version folder ``CURRENT`` names; the index folder holds nothing else."""
    name = (index_dir / "CURRENT").read_text().strip()
    assert sorted(p.name for p in index_dir.iterdir()) == ["CURRENT", name]
    return index_dir / name


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_build_load_and_retrieve(corpus: Path, tmp_path: Path, kind: str) -> None:
    index_dir = tmp_path / "idx"
    manifest = build_fake_index(corpus, index_dir, faiss_kind=kind)
    version = _version_dir(index_dir)
    assert sorted(p.name for p in version.iterdir()) == [
        ".readers.lock",
        "bm25",
        "dense.faiss",
        "manifest.json",
        "passages.jsonl",
    ]
    on_disk = json.loads((version / "manifest.json").read_text())
    assert on_disk == manifest
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["embedder"] == "hashing-64" and manifest["dim"] == 64
    assert manifest["counts"] == {"documents": len(TOPICS), "passages": len(TOPICS), "skipped_files": 0}
    assert manifest["chunking"] == {"mode": "sentences", "size": 100, "overlap": 1}
    assert manifest["faiss_kind"] == kind
    assert {"citerag_version", "created", "skipped", "source"} <= set(manifest)

    idx = load_index(index_dir)
    assert len(idx.passages) == len(TOPICS)
    assert all(p.pid == f"{p.doc_id}#0" for p in idx.passages)
    assert isinstance(idx.bm25(), BM25Retriever)
    dense = idx.dense(FakeEmbedder())
    assert isinstance(dense, DenseRetriever) and dense.kind == kind
    want = [doc_id_of("honeybee"), doc_id_of("penicillin")]
    for kind_name in ("bm25", "hybrid"):
        r = idx.retriever(kind_name, embedder=FakeEmbedder())
        assert [res[0].doc_id for res in r.retrieve(QUERIES, 3)] == want
    assert isinstance(idx.retriever("hybrid", embedder=FakeEmbedder()), HybridRetriever)
    exact = idx.retriever("dense", embedder=FakeEmbedder()).retrieve([idx.passages[7].text], 1)
    assert exact[0][0].pid == idx.passages[7].pid


def test_passage_spans_point_into_the_documents(corpus: Path, tmp_path: Path) -> None:
    from retrievers.ingest import load_documents

    build_fake_index(corpus, tmp_path / "idx", mode="tokens", size=12, overlap=4)
    docs = {d.doc_id: d for d in load_documents(corpus)[0]}
    idx = load_index(tmp_path / "idx")
    assert len(idx.passages) > len(TOPICS)
    for p in idx.passages:
        assert docs[p.doc_id].text[p.start : p.end] == p.text
        assert p.title == docs[p.doc_id].title


def test_ivf_index_on_many_passages(corpus: Path, tmp_path: Path) -> None:
    manifest = build_fake_index(corpus, tmp_path / "idx", faiss_kind="ivf", mode="tokens", size=6, overlap=2, nprobe=3)
    assert manifest["faiss_kind"] == "ivf" and manifest["faiss"]["nprobe"] == 3
    idx = load_index(tmp_path / "idx")
    assert idx.dense(FakeEmbedder()).nprobe == 3  # saved with the FAISS index
    dense = idx.dense(FakeEmbedder(), nprobe=1000)
    assert dense.kind == "ivf"
    assert dense.retrieve([idx.passages[40].text], 1)[0][0].pid == idx.passages[40].pid


def test_rebuild_replaces_the_index_and_leaves_nothing_behind(corpus: Path, tmp_path: Path) -> None:
    build_fake_index(corpus, tmp_path / "idx")
    build_fake_index(corpus, tmp_path / "idx", mode="tokens", size=10, overlap=2)
    assert load_index(tmp_path / "idx").manifest["chunking"]["mode"] == "tokens"
    assert _leftovers(tmp_path) == []
    _version_dir(tmp_path / "idx")  # the first version is gone


@pytest.mark.parametrize("exc", [RuntimeError("embedder broke"), KeyboardInterrupt()])
def test_failed_build_keeps_the_old_index(corpus: Path, tmp_path: Path, exc: BaseException) -> None:
    index_dir = tmp_path / "idx"
    build_fake_index(corpus, index_dir)
    before = _snapshot(index_dir)
    files_before = {p.relative_to(index_dir): p.read_bytes() for p in index_dir.rglob("*") if p.is_file()}

    failing = FakeEmbedder(fail_on=3, exc=exc)
    with pytest.raises(type(exc)):
        build_fake_index(corpus, index_dir, embedder=failing, batch_size=4, mode="tokens", size=10, overlap=2)
    assert failing.calls == 3  # it failed midway through embedding
    assert _leftovers(tmp_path) == []
    _version_dir(index_dir)
    assert _snapshot(index_dir) == before
    assert {p.relative_to(index_dir): p.read_bytes() for p in index_dir.rglob("*") if p.is_file()} == files_before


def test_failed_first_build_leaves_no_folder(corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        build_fake_index(corpus, tmp_path / "idx", embedder=FakeEmbedder(fail_on=1, exc=RuntimeError("x")))
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_overwrite_a_folder_that_is_not_an_index(corpus: Path, tmp_path: Path) -> None:
    precious = tmp_path / "docs"
    precious.mkdir()
    (precious / "thesis.txt").write_text("do not delete", encoding="utf-8")
    with pytest.raises(InputError, match="not a citerag index"):
        build_fake_index(corpus, precious)
    assert [p.name for p in precious.iterdir()] == ["thesis.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    build_fake_index(corpus, empty)
    assert load_index(empty).manifest["counts"]["documents"] == len(TOPICS)


def test_index_inside_the_corpus_is_not_ingested(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path)
    build_fake_index(corpus, corpus / "index")
    manifest = build_fake_index(corpus, corpus / "index")  # the second build must not read the first
    assert manifest["counts"] == {"documents": len(TOPICS), "passages": len(TOPICS), "skipped_files": 0}


def test_corpus_without_readable_documents(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "blob.txt").write_bytes(b"\x00\x01\x02")
    (corpus / "old.txt").write_bytes("na\u00efve".encode("latin-1"))
    with caplog.at_level(logging.WARNING, logger="retrievers.index"), pytest.raises(CorpusError, match="no readable"):
        build_fake_index(corpus, tmp_path / "idx")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "blob.txt" in warnings[0].getMessage() and "old.txt" in warnings[0].getMessage()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus"]


def test_skipped_files_are_recorded(corpus: Path, tmp_path: Path) -> None:
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "good.txt").write_text("Glaciers carve valleys.", encoding="utf-8")
    (mixed / "bad.txt").write_bytes(b"\x00binary")
    manifest = build_fake_index(mixed, tmp_path / "idx")
    assert manifest["counts"]["skipped_files"] == 1
    assert manifest["skipped"] == [{"path": "bad.txt", "reason": "binary file (contains NUL bytes)"}]


def test_missing_index_says_how_to_build_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(IndexMissingError) as err:
        load_index(missing)
    assert f"citerag index PATH --index {missing}" in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexMissingError, match="citerag index PATH --index"):
        load_index(tmp_path / "empty")


def test_incompatible_indexes(corpus: Path, tmp_path: Path) -> None:
    index_dir = tmp_path / "idx"
    build_fake_index(corpus, index_dir)
    with pytest.raises(IndexIncompatibleError, match="rebuild it with `citerag index"):
        load_index(index_dir).dense(FakeEmbedder(dim=32))

    manifest_file = _version_dir(index_dir) / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    manifest["format_version"] = 99
    manifest_file.write_text(json.dumps(manifest))
    with pytest.raises(IndexIncompatibleError, match="format version 99.*citerag index"):
        load_index(index_dir)

    manifest_file.write_text("{broken")
    with pytest.raises(IndexIncompatibleError, match="citerag index"):
        load_index(index_dir)


def test_options_are_validated(corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="flat, ivf, hnsw"):
        build_fake_index(corpus, tmp_path / "a", faiss_kind="annoy")
    with pytest.raises(ConfigError, match="smaller than the size"):
        build_fake_index(corpus, tmp_path / "b", mode="tokens", size=5, overlap=5)
    build_fake_index(corpus, tmp_path / "idx")
    with pytest.raises(ConfigError, match="hybrid, bm25, dense"):
        load_index(tmp_path / "idx").retriever("sparse")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]


def test_retriever_with_a_callable_reranker(corpus: Path, tmp_path: Path) -> None:
    build_fake_index(corpus, tmp_path / "idx")
    idx = load_index(tmp_path / "idx")
    r = idx.retriever("bm25", reranker=lambda q, texts: [-len(t) for t in texts], rerank_depth=4)
    assert isinstance(r, RerankingRetriever)
    out = r.retrieve(["bees"], 2)[0]
    assert len(out) == 2 and out[0].score >= out[1].score


def test_progress_follows_the_logger_level() -> None:
    logger = logging.getLogger("citerag")
    old = logger.level
    try:
        logger.setLevel(logging.INFO)
        assert progress_enabled(True) and not progress_enabled(False)
        logger.setLevel(logging.ERROR)
        assert not progress_enabled(True)
    finally:
        logger.setLevel(old)


def test_default_embedder_is_loaded_from_the_manifest(corpus: Path, tmp_path: Path) -> None:
    """Real MiniLM end to end: build with the default name, reload it from the manifest."""
    manifest = build_index(corpus, tmp_path / "idx", embedder=minilm_embedder(), progress=False)
    assert manifest["embedder"] == DEFAULT_EMBEDDER and manifest["dim"] == 384
    idx = load_index(tmp_path / "idx")
    hybrid = idx.retriever("hybrid")  # loads all-MiniLM-L6-v2 by the manifest's name
    out = hybrid.retrieve(["Which insects make honey in wax combs?", "What is the biggest animal ever?"], 3)
    assert [r[0].doc_id for r in out] == [doc_id_of("honeybee"), doc_id_of("whales")]
    assert isinstance(idx.embedder(), SentenceTransformerEmbedder)
    assert idx.dense() is idx.dense(idx.embedder()) and idx.dense().embedder is idx.embedder()  # loaded once
