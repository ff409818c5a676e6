"""Corpus ingest: every file type, skipped inputs, determinism."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from retriever_fixtures import TOPICS, doc_id_of, write_corpus

from pipeline.errors import CorpusError
from retrievers.ingest import Document, html_to_text, load_documents, markdown_title


def _by_id(docs: list[Document]) -> dict[str, Document]:
    return {d.doc_id: d for d in docs}


def test_txt_file_title_is_stem_and_text_unchanged(tmp_path: Path) -> None:
    f = tmp_path / "notes.txt"
    f.write_text("First line.\n\nSecond  line.\n", encoding="utf-8")
    docs, skipped = load_documents(f)
    assert skipped == []
    text = "First line.\n\nSecond  line.\n"
    assert docs == [Document(doc_id="notes.txt", title="notes", text=text, source="notes.txt")]


def test_markdown_title_from_first_h1_and_fallback(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("Intro\n\n```\n# not a title\n```\n# Real Title #\n\nBody.\n", encoding="utf-8")
    (tmp_path / "b.md").write_text("## only h2\n\nBody.\n", encoding="utf-8")
    docs = _by_id(load_documents(tmp_path)[0])
    assert docs["a.md"].title == "Real Title"
    assert docs["a.md"].text.startswith("Intro")  # markdown text is kept as written
    assert docs["b.md"].title == "b"
    assert markdown_title("no heading") == ""


def test_html_visible_text_title_and_blocks(tmp_path: Path) -> None:
    html = (
        "<html><head><title> The  Page </title><style>p {color: red}</style>"
        "<script>var x = 'hidden';</script></head>"
        "<body><h1>Heading</h1><p>First &amp; foremost.</p><div>Second<br>third</div>"
        "<ul><li>one</li><li>two</li></ul></body></html>"
    )
    (tmp_path / "page.html").write_text(html, encoding="utf-8")
    (tmp_path / "noh.htm").write_text("<body><h1>Only H1</h1><p>Text here.</p></body>", encoding="utf-8")
    docs = _by_id(load_documents(tmp_path)[0])
    page = docs["page.html"]
    assert page.title == "The Page"
    assert page.text == "Heading\nFirst & foremost.\nSecond\nthird\none\ntwo"
    assert "hidden" not in page.text and "color" not in page.text
    assert docs["noh.htm"].title == "Only H1"
    assert html_to_text("<p>x</p>")[0] == ""


def test_jsonl_records_and_malformed_lines_reported(tmp_path: Path) -> None:
    lines = [
        json.dumps({"id": "d1", "title": "One", "text": "Alpha text."}),
        "{not json",
        json.dumps({"title": "no id", "text": "x"}),
        json.dumps({"id": "d3", "title": "no text"}),
        "",
        json.dumps({"id": 7, "text": "Numeric id."}),
        json.dumps(["a", "list"]),
        json.dumps({"id": "d1", "text": "duplicate id"}),
    ]
    (tmp_path / "data.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    docs, skipped = load_documents(tmp_path)
    assert [(d.doc_id, d.title, d.text, d.source) for d in docs] == [
        ("d1", "One", "Alpha text.", "data.jsonl:1"),
        ("7", "", "Numeric id.", "data.jsonl:6"),
    ]
    assert [where for where, _ in skipped] == [f"data.jsonl:{n}" for n in (2, 3, 4, 7, 8)]
    reasons = dict(skipped)
    assert "invalid JSON" in reasons["data.jsonl:2"]
    assert '"id"' in reasons["data.jsonl:3"] and '"text"' in reasons["data.jsonl:4"]
    assert "duplicate" in reasons["data.jsonl:8"]


def test_binary_latin1_empty_and_unsupported_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "good.txt").write_text("Readable text.", encoding="utf-8")
    (tmp_path / "blob.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (tmp_path / "old.txt").write_bytes("Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e".encode("latin-1"))
    (tmp_path / "empty.md").write_text("  \n\n", encoding="utf-8")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    (tmp_path / "data.csv").write_text("a,b\n", encoding="utf-8")
    (tmp_path / ".hidden.txt").write_text("secret", encoding="utf-8")
    with caplog.at_level(logging.DEBUG, logger="retrievers.ingest"):
        docs, skipped = load_documents(tmp_path)
    assert [d.doc_id for d in docs] == ["good.txt"]
    reasons = dict(skipped)
    assert set(reasons) == {"blob.txt", "old.txt", "empty.md"}
    assert "binary" in reasons["blob.txt"]
    assert "UTF-8" in reasons["old.txt"]
    assert "empty" in reasons["empty.md"]
    assert any("ignored 2 file(s)" in r.getMessage() for r in caplog.records)


def test_utf8_bom_is_stripped(tmp_path: Path) -> None:
    (tmp_path / "bom.txt").write_bytes("\ufeffHello.".encode())
    assert load_documents(tmp_path)[0][0].text == "Hello."


def test_folder_is_recursive_sorted_and_deterministic(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path)
    docs, skipped = load_documents(corpus)
    assert skipped == []
    assert len(docs) == len(TOPICS)
    assert {d.doc_id for d in docs} == {doc_id_of(stem) for stem, _, _ in TOPICS}
    files = [d.doc_id for d in docs if "/" in d.doc_id]
    assert files == sorted(files)
    assert docs == load_documents(corpus)[0]
    titles = {d.doc_id: d.title for d in docs}
    assert titles["notes/volcano.md"] == "Volcanoes"  # md heading
    assert titles["web/honeybee.html"] == "Honeybees"  # html <title>
    assert titles["notes/photosynthesis.txt"] == "photosynthesis"  # txt: stem
    assert titles["chess"] == "Chess"  # jsonl title


def test_exclude_leaves_out_a_subfolder(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("A.", encoding="utf-8")
    (tmp_path / "index").mkdir()
    (tmp_path / "index" / "b.txt").write_text("B.", encoding="utf-8")
    assert [d.doc_id for d in load_documents(tmp_path, exclude=[tmp_path / "index"])[0]] == ["a.txt"]


def test_missing_path_is_a_corpus_error(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="does not exist"):
        load_documents(tmp_path / "nope")


def test_plain_text_title_from_a_short_first_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from retrievers.ingest import load_documents

    (tmp_path / "a.txt").write_text("The printing press\n\nGutenberg built a press.\n")
    (tmp_path / "b_notes.txt").write_text("No title line here, just a long first sentence that runs on.\nMore.\n")
    docs, _ = load_documents(str(tmp_path))
    assert [(d.doc_id, d.title) for d in docs] == [("a.txt", "The printing press"), ("b_notes.txt", "b_notes")]


def test_files_over_the_size_cap_are_skipped_without_being_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "small.txt").write_text("Glaciers carve valleys.", encoding="utf-8")
    with (tmp_path / "huge.txt").open("wb") as f:  # sparse: 3 MB on paper, nothing on disk
        f.truncate(3_000_000)
    real_open, reads = Path.open, []

    def recording_open(self: Path, *args: object, **kwargs: object) -> object:
        f = real_open(self, *args, **kwargs)  # type: ignore[arg-type]
        real_read = f.read

        def read(n: int = -1) -> bytes:
            reads.append((self.name, n))
            return real_read(n)

        f.read = read  # type: ignore[method-assign]
        return f

    monkeypatch.setattr(Path, "open", recording_open)
    docs, skipped = load_documents(tmp_path, max_file_bytes=1_000_000)
    monkeypatch.setattr(Path, "open", real_open)
    assert all(name != "huge.txt" for name, _ in reads) and ("small.txt", 1_000_001) in reads
    assert [d.doc_id for d in docs] == ["small.txt"]
    reason = "larger than the size cap (3.0 MB > 1 MB): split it, or raise the cap with --max-file-mb"
    assert skipped == [("huge.txt", reason)]
    docs, skipped = load_documents(tmp_path, max_file_bytes=5_000_000)  # under the cap: read (and binary)
    assert skipped == [("huge.txt", "binary file (contains NUL bytes)")]


def test_symlink_loops_end_and_links_to_files_are_read(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    (corpus / "a" / "b").mkdir(parents=True)
    (corpus / "a" / "b" / "deep.txt").write_text("Deep text.", encoding="utf-8")
    (tmp_path / "outside.md").write_text("# Outside\n\nLinked text.", encoding="utf-8")
    (corpus / "a" / "b" / "up").symlink_to(corpus / "a")  # a loop: a/b/up -> a
    (corpus / "root").symlink_to(corpus)  # a loop to the corpus itself
    (corpus / "self").symlink_to(corpus / "self")  # a link to itself
    (corpus / "linked.md").symlink_to(tmp_path / "outside.md")  # a link to a file: fine
    docs, skipped = load_documents(corpus)
    assert sorted(d.doc_id for d in docs) == ["a/b/deep.txt", "linked.md"]
    assert _by_id(docs)["linked.md"].title == "Outside"
    reasons = dict(skipped)
    assert set(reasons) == {"a/b/up", "root", "self"}
    assert "already read" in reasons["a/b/up"] and "loop" in reasons["self"]
