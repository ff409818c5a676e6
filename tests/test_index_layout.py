"""The index folder: versions behind an atomic CURRENT pointer, old-layout folders, readers that
hold their version, the writers' lock, and damaged files reported as IndexIncompatibleError."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pytest
from fakes import FakeEmbedder
from retriever_fixtures import build_fake_index, write_corpus

from pipeline.errors import IndexBusyError, IndexIncompatibleError, IndexMissingError, IndexWriteError
from retrievers import index_store as store
from retrievers.index import index_exists, load_index, read_manifest

QUERIES = ["queen bees collect nectar", "Alexander Fleming discovered an antibiotic"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


def _results(index_dir: Path) -> list[list[str]]:
    with load_index(index_dir) as idx:
        out = idx.retriever("hybrid", embedder=FakeEmbedder()).retrieve(QUERIES, 5)
    return [[p.pid for p in row] for row in out]


def _current(index_dir: Path) -> str:
    return (index_dir / "CURRENT").read_text().strip()


def _make_legacy(index_dir: Path) -> None:
    """Turn a fresh index into the layout of citerag before versions: the files directly in DIR."""
    version = index_dir / _current(index_dir)
    for entry in version.iterdir():
        if entry.name != ".readers.lock":
            entry.rename(index_dir / entry.name)
    shutil.rmtree(version)
    (index_dir / "CURRENT").unlink()


def test_a_rebuild_publishes_a_new_version_and_removes_the_old(corpus: Path, tmp_path: Path) -> None:
    index_dir = tmp_path / "idx"
    build_fake_index(corpus, index_dir)
    first = _current(index_dir)
    build_fake_index(corpus, index_dir, mode="tokens", size=10, overlap=2)
    second = _current(index_dir)
    assert second != first and store.is_own_entry(second)
    assert sorted(p.name for p in index_dir.iterdir()) == ["CURRENT", second]
    assert read_manifest(index_dir)["chunking"]["mode"] == "tokens"


def test_a_reader_keeps_its_version_until_it_closes(corpus: Path, tmp_path: Path) -> None:
    index_dir = tmp_path / "idx"
    build_fake_index(corpus, index_dir)
    held = load_index(index_dir)
    old_version = held.data_dir
    build_fake_index(corpus, index_dir, mode="tokens", size=10, overlap=2)
    assert old_version.is_dir()  # a reader holds it: the rebuild kept it
    # ...and it still reads consistently: the lazily loaded retrievers come from its version.
    old_pids = [p.pid for p in held.retriever("hybrid", embedder=FakeEmbedder()).retrieve(QUERIES, 3)[0]]
    assert all(pid.endswith("#0") for pid in old_pids)
    assert load_index(index_dir).manifest["chunking"]["mode"] == "tokens"
    held.close()
    build_fake_index(corpus, index_dir)  # the next run removes the version nobody holds any more
    assert not old_version.exists()
    assert sorted(p.name for p in index_dir.iterdir()) == ["CURRENT", _current(index_dir)]


def test_an_old_layout_index_opens_and_is_converted(corpus: Path, tmp_path: Path) -> None:
    index_dir = tmp_path / "idx"
    build_fake_index(corpus, index_dir)
    before = _results(index_dir)
    _make_legacy(index_dir)
    assert not (index_dir / "CURRENT").exists() and index_exists(index_dir)
    assert _results(index_dir) == before
    assert read_manifest(index_dir)["counts"]["passages"] > 0
    build_fake_index(corpus, index_dir)
    assert sorted(p.name for p in index_dir.iterdir()) == ["CURRENT", _current(index_dir)]
    assert _results(index_dir) == before


def test_an_old_layout_reader_keeps_the_old_files(corpus: Path, tmp_path: Path) -> None:
    index_dir = tmp_path / "idx"
    build_fake_index(corpus, index_dir)
    _make_legacy(index_dir)
    with load_index(index_dir) as held:
        assert held.data_dir == index_dir
        build_fake_index(corpus, index_dir, mode="tokens", size=10, overlap=2)
        assert (index_dir / "dense.faiss").is_file()  # still held
        assert held.dense(FakeEmbedder()).retrieve(QUERIES, 1)[0]
    assert load_index(index_dir).manifest["chunking"]["mode"] == "tokens"
    build_fake_index(corpus, index_dir)
    assert sorted(p.name for p in index_dir.iterdir()) == ["CURRENT", _current(index_dir)]


def test_leftovers_of_a_killed_run_are_removed_and_the_good_version_kept(corpus: Path, tmp_path: Path) -> None:
    index_dir = tmp_path / "idx"
    build_fake_index(corpus, index_dir)
    good = _current(index_dir)
    before = _results(index_dir)
    # What a SIGKILL can leave: a half-written build, a published-but-unpointed version, a
    # pointer temp file, a half-deleted trash folder and a stale lock file.
    (index_dir / ".build-v-20250101T000000-0123abcd").mkdir()
    (index_dir / ".build-v-20250101T000000-0123abcd" / "passages.jsonl").write_text("{")
    unpointed = index_dir / "v-20250101T000001-89abcdef"
    shutil.copytree(index_dir / good, unpointed)
    (index_dir / ".CURRENT.tmp-0123456789ab").write_text(unpointed.name)
    (index_dir / ".trash-0123456789ab").mkdir()
    (index_dir / ".citerag-index.lock").write_text("pid 1 on nowhere\n")
    assert _results(index_dir) == before  # readers are not disturbed by any of it
    build_fake_index(corpus, index_dir)
    assert sorted(p.name for p in index_dir.iterdir()) == ["CURRENT", _current(index_dir)]
    assert _results(index_dir) == before


def test_a_user_folder_named_like_a_version_is_not_an_index(corpus: Path, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    (folder / "v-notes").mkdir(parents=True)
    with pytest.raises(Exception, match="not a citerag index"):
        build_fake_index(corpus, folder)
    assert [p.name for p in folder.iterdir()] == ["v-notes"]


def test_a_second_writer_fails_at_once_naming_the_first(corpus: Path, tmp_path: Path) -> None:
    index_dir = tmp_path / "idx"
    build_fake_index(corpus, index_dir)
    names = sorted(p.name for p in index_dir.iterdir())
    with store.writer_lock(index_dir):
        with pytest.raises(IndexBusyError, match=r"another `citerag index` run \(pid \d+ on .*started") as err:
            build_fake_index(corpus, index_dir)
        assert err.value.exit_code == 6
    assert sorted(p.name for p in index_dir.iterdir()) == names  # nothing left behind, lock file gone


def test_disk_full_keeps_the_old_index(corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``CITERAG_FAULT_ENOSPC=passages`` writes passages.jsonl to /dev/full: a real ENOSPC."""
    index_dir = tmp_path / "idx"
    build_fake_index(corpus, index_dir)
    before, names = _results(index_dir), sorted(p.name for p in index_dir.iterdir())
    monkeypatch.setenv("CITERAG_FAULT_ENOSPC", "passages")
    with pytest.raises(IndexWriteError, match="No space left on device.*previous index is unchanged.*free disk") as e:
        build_fake_index(corpus, index_dir, mode="tokens", size=10, overlap=2)
    assert isinstance(e.value.__cause__, OSError) and e.value.__cause__.errno == errno.ENOSPC
    assert sorted(p.name for p in index_dir.iterdir()) == names
    assert _results(index_dir) == before


def _damage_manifest(version: Path, **fields: object) -> None:
    manifest = json.loads((version / "manifest.json").read_text())
    manifest.update(fields)
    (version / "manifest.json").write_text(json.dumps(manifest))


DAMAGE = {
    "counts is a number": lambda v: _damage_manifest(v, counts=5),
    "counts holds a string": lambda v: _damage_manifest(v, counts={"passages": "30"}),
    "dim is a string": lambda v: _damage_manifest(v, dim="64"),
    "embedder is a list": lambda v: _damage_manifest(v, embedder=["x"]),
    "manifest is a list": lambda v: (v / "manifest.json").write_text("[1, 2]"),
    "manifest truncated": lambda v: (v / "manifest.json").write_text('{"format_version": 1, "emb'),
    "passages missing": lambda v: (v / "passages.jsonl").unlink(),
    "passage text is a number": lambda v: (v / "passages.jsonl").write_text(
        '{"doc_id": "a", "text": 5, "start": 0, "end": 1}\n'
    ),
    "faiss truncated": lambda v: (v / "dense.faiss").write_bytes((v / "dense.faiss").read_bytes()[:300]),
    "faiss garbage": lambda v: (v / "dense.faiss").write_bytes(b"not a faiss index" * 20),
    "faiss missing": lambda v: (v / "dense.faiss").unlink(),
    "bm25 files truncated": lambda v: [f.write_bytes(f.read_bytes()[:7]) for f in (v / "bm25").iterdir()],
    "bm25 settings garbage": lambda v: (v / "bm25" / "citerag_bm25.json").write_text("[]"),
    "bm25 missing": lambda v: shutil.rmtree(v / "bm25"),
    "CURRENT names a missing version": lambda v: (v.parent / "CURRENT").write_text("v-20250101T000000-0123abcd\n"),
    "CURRENT is garbage": lambda v: (v.parent / "CURRENT").write_text("../../etc\n"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_indexes_raise_incompatible_with_the_fix(corpus: Path, tmp_path: Path, damage: str) -> None:
    index_dir = tmp_path / "idx"
    build_fake_index(corpus, index_dir)
    DAMAGE[damage](index_dir / _current(index_dir))
    with pytest.raises(IndexIncompatibleError, match="citerag index") as err:
        with load_index(index_dir) as idx:
            idx.retriever("hybrid", embedder=FakeEmbedder())
    assert err.value.exit_code == 3 and "\n" not in str(err.value)
    build_fake_index(corpus, index_dir)  # re-running `citerag index` repairs it
    assert len(_results(index_dir)) == 2


def test_missing_index_folders(tmp_path: Path) -> None:
    (tmp_path / "only-a-lock").mkdir()
    (tmp_path / "only-a-lock" / ".citerag-index.lock").write_text("")
    for path in (tmp_path / "nowhere", tmp_path / "only-a-lock", tmp_path / "file"):
        if path.name == "file":
            path.write_text("x")
        with pytest.raises(IndexMissingError, match="citerag index PATH --index"):
            load_index(path)


def test_max_file_mb_reaches_the_indexer(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from click.testing import CliRunner

    import retrievers.index
    from app.cli import cli

    seen: dict = {}

    def fake_build(*args: object, **kwargs: object) -> dict:
        seen.update(kwargs)
        return {"counts": {"documents": 1, "passages": 1}}

    monkeypatch.setattr(retrievers.index, "build_index", fake_build)
    out = CliRunner().invoke(cli, ["index", str(tmp_path), "--index", str(tmp_path / "i"), "--max-file-mb", "0.5"])
    assert out.exit_code == 0, out.output
    assert seen["max_file_mb"] == 0.5
    assert (
        CliRunner()
        .invoke(cli, ["index", str(tmp_path), "--index", str(tmp_path / "i"), "--max-file-mb", "0"])
        .exit_code
        == 2
    )
