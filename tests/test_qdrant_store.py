"""`citerag index --store qdrant` end to end on qdrant-client's embedded local mode: the real CLI
(subprocess), MiniLM embeddings, real Qdrant collections with dense and sparse (server-side
IDF) vectors, and the FAISS + bm25s index of the same corpus to agree with."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import ConfigError
from pipeline.types import Passage
from retrievers.index import build_index, load_index, read_manifest
from retrievers.ingest import load_documents

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "pipeline" / "sample_corpus"

#: Questions of the sample corpus and the passage each must rank first, for every retriever kind.
EXPECTED_TOP = {
    "When did the Golden Gate Bridge open to motor vehicles?": "golden_gate_bridge.md",
    "Who discovered polonium and radium?": "marie_curie.txt",
    "How tall is Mount Everest above sea level?": "mount_everest.md",
    "What do plants make from carbon dioxide and water in photosynthesis?": "photosynthesis.html",
    "Who invented the movable-type printing press?": "printing_press.txt",
}
NEW_DOC = "Glaciers are rivers of ice that carve deep U-shaped valleys into mountains over thousands of years."


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), **extra}


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "-q", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=_env(),
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def qdrant_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("qdrant-idx") / "sample"
    proc = _cli("index", str(SAMPLE), "--index", str(out), "--store", "qdrant")
    assert proc.returncode == 0, proc.stderr
    assert "indexed 8 documents as 11 passages" in proc.stdout
    return out


def test_the_manifest_records_the_store(qdrant_index: Path, sample_index: Path) -> None:
    m = read_manifest(qdrant_index)
    assert m["store"] == "qdrant"
    assert m["qdrant"]["url"] is None and m["qdrant"]["collection"] == "citerag"
    assert m["qdrant"]["active"].startswith("citerag-v-")
    assert m["counts"]["passages"] == 11 and m["dim"] == 384
    # the collection lives in local mode inside the published version folder
    version = (qdrant_index / "CURRENT").read_text().strip()
    assert (qdrant_index / version / m["qdrant"]["path"] / "meta.json").is_file()
    assert not (qdrant_index / version / "dense.faiss").exists()
    assert read_manifest(sample_index)["store"] == "faiss+bm25s"


def test_ask_cites_exact_spans_of_the_sources(qdrant_index: Path, fake_llm: str) -> None:
    docs = {d.doc_id: d.text for d in load_documents(SAMPLE)[0]}
    for kind in ("hybrid", "bm25"):
        proc = _cli(
            "ask", "When did the Golden Gate Bridge open?", "--index", str(qdrant_index), "--retriever", kind,
            "--llm-url", fake_llm, "--no-abstain", "--no-quotes", "--json",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        answer = json.loads(proc.stdout)
        assert answer["citations"], answer
        assert answer["citations"][0]["doc_id"] == "golden_gate_bridge.md"
        for p in answer["passages"]:
            assert docs[p["doc_id"]][p["start"] : p["end"]] == p["text"]


def test_verify_and_revise_give_the_folder_index_results(qdrant_index: Path, sample_index: Path, fake_llm: str) -> None:
    """`ask --verify` and `revise` research claims through the index's retriever: on the Qdrant
    store they find the same evidence, so they report the same statuses, supports and text."""

    def run(index: Path, *args: str) -> dict:
        proc = _cli(*args, "--index", str(index), "--llm-url", fake_llm, "--json")
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    revise = ("revise", "--text", "The Golden Gate Bridge opened in 1990. Marie Curie won two Nobel Prizes.")
    a, b = run(qdrant_index, *revise), run(sample_index, *revise)
    assert a["revised"] == b["revised"]
    assert [(c["status"], round(c["support"], 4)) for c in a["claims"]] == [
        (c["status"], round(c["support"], 4)) for c in b["claims"]
    ]
    assert {c["status"] for c in a["claims"]} >= {"kept"}  # the true claim is supported by the evidence
    ask = ("ask", "When did the Golden Gate Bridge open?", "--verify", "--no-abstain")
    a, b = run(qdrant_index, *ask), run(sample_index, *ask)
    assert a["answer"] == b["answer"] and a["verification"]["checked"] == b["verification"]["checked"] > 0
    assert [c["doc_id"] for c in a["citations"]] == [c["doc_id"] for c in b["citations"]]


def test_serve_answers_from_the_qdrant_index(qdrant_index: Path) -> None:
    """The HTTP server opens the index unchanged: /v1/ask cites the exact span, /v1/documents
    gives the cited window, and a per-request retriever kind works."""
    import httpx
    from fakes import FakeGenerator
    from test_serve import serving, settings

    docs = {d.doc_id: d.text for d in load_documents(SAMPLE)[0]}
    generator = FakeGenerator(["Marie Curie discovered polonium and radium [1]."])
    with serving(settings(qdrant_index), generator=generator) as url:
        for kind in ("hybrid", "dense"):
            body = {"question": "Who discovered polonium and radium?", "abstain": False, "retriever": kind}
            api = httpx.post(f"{url}/v1/ask", json=body, timeout=120)
            assert api.status_code == 200, api.text
            cited = api.json()["citations"][0]
            assert cited["doc_id"] == "marie_curie.txt"
            assert docs["marie_curie.txt"][cited["start"] : cited["end"]] == cited["text"]
        window = httpx.get(
            f"{url}/v1/documents/marie_curie.txt", params={"start": cited["start"], "end": cited["end"]}, timeout=60
        )
        assert window.status_code == 200, window.text


@pytest.mark.parametrize("kind", ["dense", "bm25", "hybrid"])
def test_each_retriever_finds_the_expected_passage_and_agrees_with_faiss_bm25s(
    qdrant_index: Path, sample_index: Path, kind: str
) -> None:
    questions = list(EXPECTED_TOP)
    with load_index(sample_index) as folder, load_index(qdrant_index) as qdrant:
        emb = folder.embedder()
        want = folder.retriever(kind, embedder=emb).retrieve(questions, 3)
        got = qdrant.retriever(kind, embedder=emb).retrieve(questions, 3)
    for q, w, g in zip(questions, want, got):
        assert g[0].doc_id == EXPECTED_TOP[q], (q, g)
        assert g[0] == w[0].with_score(g[0].score)  # the same passage: doc_id, span, text, pid
        # BM25 (bm25s's formula, IDF on the server), cosine and RRF give the same scores
        assert g[0].score == pytest.approx(w[0].score, rel=1e-4)
        if kind != "bm25":  # BM25 in the folder also lists unmatched passages with score 0
            assert [p.pid for p in g] == [p.pid for p in w]


def test_pdf_pages_survive_the_round_trip(tmp_path: Path) -> None:
    from qdrant_client import QdrantClient

    from retrievers.qdrant_store import QdrantRetriever, write_collection

    def passage(doc_id: str, text: str, start: int, pid: str, **pages: int) -> Passage:
        return Passage(doc_id, text, title=doc_id, start=start, end=start + len(text), pid=pid, **pages)

    passages = [
        passage("report.pdf", "The bridge opened in 1937 after four years of work.", 0, "r#0", page=2),
        passage("report.pdf", "Basalt lava flows cover the plateau.", 52, "r#1", page=3, page_end=5),
        passage("memo.docx", "The belfry has two hundred steps.", 0, "m#0"),
    ]
    vectors = np.eye(3, 4, dtype=np.float32)
    client = QdrantClient(path=str(tmp_path / "q"))
    try:
        write_collection(client, "pages", "v1", passages, vectors, language="english", stopwords="en")
        hits = QdrantRetriever(client, "pages", "bm25", None).retrieve(["bridge 1937", "basalt lava", "belfry"], 1)
    finally:
        client.close()
    assert [h[0].with_score(0.0) for h in hits] == [p.with_score(0.0) for p in passages]
    assert [(h[0].page, h[0].page_end) for h in hits] == [(2, None), (3, 5), (None, None)]


def test_reindexing_switches_the_alias_and_drops_the_old_collection(tmp_path: Path) -> None:
    from qdrant_client import QdrantClient

    from retrievers.qdrant_store import QdrantRetriever, write_collection

    old = [Passage("a", "honeybees make honey in wax combs", end=33, pid="a#0")]
    new = [Passage("b", "glaciers carve valleys", end=22, pid="b#0")]
    client = QdrantClient(path=str(tmp_path / "q"))
    try:
        first = write_collection(
            client, "c", "v1", old, np.ones((1, 4), np.float32), language="english", stopwords="en"
        )
        reader = QdrantRetriever(client, "c", "bm25", None)
        assert reader.retrieve(["honey"], 1)[0][0].doc_id == "a"
        second = write_collection(
            client, "c", "v2", new, np.ones((1, 4), np.float32), language="english", stopwords="en"
        )
        # the same reader, through the alias, sees the whole new collection
        assert reader.retrieve(["glaciers"], 1)[0][0].doc_id == "b"
        assert reader.retrieve(["honey"], 1) == [[]]
        names = {c.name for c in client.get_collections().collections}
        assert names == {second} and first != second
    finally:
        client.close()


def _wait_for_pause(proc: subprocess.Popen[str], phase: str, timeout: float = 300) -> None:
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        assert proc.stderr is not None
        seen = []
        for line in proc.stderr:
            seen.append(line)
            if line.strip() == f"citerag-fault-pause {phase}":
                return
        pytest.fail(f"the indexer ended (rc {proc.wait()}) before {phase}: {''.join(seen)[-2000:]}")
    finally:
        timer.cancel()


def test_reindexing_a_folder_is_atomic_for_readers(tmp_path: Path) -> None:
    """A reader opened before keeps its version; a writer killed between writing the new collection
    and switching to it leaves the old index whole; a second writer fails at once; a finished
    re-index is what the next reader opens."""
    index_dir = tmp_path / "idx"
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "glaciers.txt").write_text(NEW_DOC, encoding="utf-8")
    assert _cli("index", str(SAMPLE), "--index", str(index_dir), "--store", "qdrant").returncode == 0
    question = ["Which rivers of ice carve U-shaped valleys?"]

    reader = load_index(index_dir)
    bm25 = reader.retriever("bm25")
    before = bm25.retrieve(question, 1)
    assert before[0][0].doc_id != "glaciers.txt"

    args = [sys.executable, "-m", "app.cli", "-q", "index", str(corpus), "--index", str(index_dir), "--store", "qdrant"]
    paused = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env=_env(CITERAG_FAULT_PAUSE="qdrant-alias"),
    )  # fmt: skip
    try:
        _wait_for_pause(paused, "qdrant-alias")
        second = _cli("index", str(corpus), "--index", str(index_dir), "--store", "qdrant")
        assert second.returncode == 6 and "another `citerag index` run" in second.stderr
    finally:
        os.kill(paused.pid, signal.SIGKILL)
        paused.wait(timeout=60)
    assert bm25.retrieve(question, 1) == before  # the open reader never noticed
    m = read_manifest(index_dir)
    assert m["counts"]["passages"] == 11  # the killed build left the old index as it was

    done = _cli("index", str(corpus), "--index", str(index_dir), "--store", "qdrant")
    assert done.returncode == 0, done.stderr
    assert not [p.name for p in index_dir.iterdir() if p.name.startswith(".build-")]  # the killed build is gone
    assert bm25.retrieve(question, 1) == before  # still the old version, held by the reader
    reader.close()
    with load_index(index_dir) as fresh:
        assert fresh.manifest["qdrant"]["active"] != m["qdrant"]["active"]
        hit = fresh.retriever("bm25").retrieve(question, 1)[0][0]
        assert (hit.doc_id, hit.text) == ("glaciers.txt", NEW_DOC)


def test_qdrant_options_need_the_qdrant_store(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--store qdrant"):
        build_index(SAMPLE, tmp_path / "x", qdrant_url="http://localhost:6333", progress=False)
    with pytest.raises(ConfigError, match="unknown index store"):
        build_index(SAMPLE, tmp_path / "x", store_kind="milvus", progress=False)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "payload",
    [
        {"doc_id": 7, "text": "t", "start": 0, "end": 1},
        {"doc_id": "d", "text": "t", "start": 0, "end": 1, "page": True},
        {"doc_id": "d", "text": "t", "start": 0},
    ],
)
def test_a_payload_that_is_not_a_passage_names_the_rebuild(payload: dict) -> None:
    from pipeline.errors import IndexIncompatibleError
    from retrievers.qdrant_store import passage_from_payload

    with pytest.raises(IndexIncompatibleError, match="rebuild the index"):
        passage_from_payload(payload, 1.0)


def test_a_payload_reads_like_a_passages_jsonl_line() -> None:
    from retrievers.qdrant_store import passage_from_payload

    record = {"doc_id": "d", "title": "T", "text": "abc", "start": 3, "end": 6, "pid": "d#0", "page": 2}
    assert passage_from_payload(record, 0.5) == Passage.from_record(record, 0.5)
    assert passage_from_payload(record, 0.5).page == 2


def test_a_qdrant_index_opens_without_reading_its_passages_file(qdrant_index: Path) -> None:
    """At scale the collection holds the passages: opening the index and answering from it
    must not read the whole ``passages.jsonl`` into memory."""
    with load_index(qdrant_index) as idx:
        assert idx._passages is None
        assert idx.passage_count == read_manifest(qdrant_index)["counts"]["passages"]
        hits = idx.retriever("hybrid").retrieve(["Who discovered polonium?"], 3)
        assert hits[0] and idx._passages is None
        doc = hits[0][0].doc_id
        parts = idx.document_passages(doc)
        assert idx._passages is None
        assert parts and all(p.doc_id == doc for p in parts)
        assert [p.start for p in parts] == sorted(p.start for p in parts)
        # the same passages, in the same order, as the passages file lists for that document
        assert [(p.pid, p.start, p.end, p.text) for p in parts] == [
            (p.pid, p.start, p.end, p.text) for p in idx.passages if p.doc_id == doc
        ]
        assert idx.document_passages("no such document") == []


@pytest.mark.parametrize("kind", ["bm25", "dense"])
def test_qdrant_ranks_candidates_as_it_ranks_the_corpus(qdrant_index: Path, kind: str) -> None:
    """Speculative retrieval's contract: candidates that hold the real top-k come back in the
    real order with the real scores; other candidates are ranked among themselves."""
    from pipeline.protocols import CacheRetriever

    queries = ["When did the Golden Gate Bridge open?", "Who discovered polonium?"]
    with load_index(qdrant_index) as idx:
        r = idx.retriever(kind)
        assert isinstance(r, CacheRetriever)
        full = r.retrieve(queries, 6)
        top = [ps[:3] for ps in full]
        cands = [list(reversed(ps)) for ps in full]  # the real top 6, shuffled
        got = r.retrieve_from(queries, cands, 3)
        assert [[(p.pid, round(p.score, 5)) for p in ps] for ps in got] == [
            [(p.pid, round(p.score, 5)) for p in ps] for ps in top
        ]
        # candidates without the best passage: the rest, in the corpus ranking's order
        rest = r.retrieve_from(queries, [ps[1:] for ps in full], 2)
        assert [[p.pid for p in ps] for ps in rest] == [[p.pid for p in ps[1:3]] for ps in full]
        assert r.retrieve_from(queries, [[], []], 3) == [[], []]
        assert not isinstance(idx.retriever("hybrid"), CacheRetriever)
