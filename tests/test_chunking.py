"""Chunking: the span invariant (property tests) and the packing rules of each mode."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import ConfigError
from retrievers.chunking import chunk_params, sentence_spans, split_passages
from retrievers.ingest import Document

_word = st.text(alphabet="abcdefghijklmnopqrstuvwxyzÉé0123456789-,'\"", min_size=1, max_size=8)
_sep = st.sampled_from([" ", "  ", ". ", "! ", "? ", ".\n", "\n", "\n\n", "\t", "... ", '." ', " \r\n"])
_texts = st.lists(st.tuples(_word, _sep), max_size=80).map(lambda parts: "".join(w + s for w, s in parts))
_leading = st.sampled_from(["", " ", "\n\n", "  \t"])


def _doc(text: str) -> Document:
    return Document(doc_id="d", title="T", text=text, source="d")


@settings(max_examples=150, deadline=None)
@given(
    text=st.tuples(_leading, _texts).map("".join),
    mode=st.sampled_from(["sentences", "tokens"]),
    size=st.integers(1, 25),
    data=st.data(),
)
def test_spans_point_into_the_document(text: str, mode: str, size: int, data: st.DataObject) -> None:
    overlap = data.draw(st.integers(0, size - 1))
    doc = _doc(text)
    passages = split_passages(doc, mode, size, overlap)
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    assert bool(passages) == bool(words)
    for i, p in enumerate(passages):
        assert p.text == doc.text[p.start : p.end]
        assert p.text and p.text == p.text.strip()
        assert (p.doc_id, p.title, p.pid) == ("d", "T", f"d#{i}")
        assert len(p.text.split()) <= size
    # Every word is covered; passages move forward.
    for ws, we in words:
        assert any(p.start <= ws and we <= p.end for p in passages)
    starts = [p.start for p in passages]
    ends = [p.end for p in passages]
    assert starts == sorted(starts) and ends == sorted(ends)
    assert len(set(starts)) == len(starts)


def test_tokens_mode_windows_and_overlap() -> None:
    text = " ".join(f"w{i}" for i in range(25))
    passages = split_passages(_doc(text), "tokens", size=10, overlap=3)
    assert [p.text.split()[0] for p in passages] == ["w0", "w7", "w14", "w21"]
    assert [len(p.text.split()) for p in passages] == [10, 10, 10, 4]
    assert passages[0].text.split()[-3:] == passages[1].text.split()[:3]
    assert passages[-1].text.endswith("w24")


def test_tokens_mode_defaults_are_100_and_20() -> None:
    text = " ".join(f"w{i}" for i in range(200))
    passages = split_passages(_doc(text), "tokens")
    assert [p.text.split()[0] for p in passages] == ["w0", "w80", "w160"]
    assert len(passages[0].text.split()) == 100


def test_sentence_boundaries() -> None:
    text = "Dr. Who? Yes!  It is (quoted.) Next line\nthird line. End"
    got = [text[s:e] for s, e in sentence_spans(text)]
    assert got == ["Dr.", "Who?", "Yes!", "It is (quoted.)", "Next line", "third line.", "End"]
    assert sentence_spans("3.14 is pi. e.g. this") == [(0, 11), (12, 16), (17, 21)]


def test_sentences_mode_packs_whole_sentences_with_overlap() -> None:
    sents = ["One two three.", "Four five.", "Six seven eight nine.", "Ten.", "Eleven twelve."]
    text = " ".join(sents)
    passages = split_passages(_doc(text), "sentences", size=6, overlap=1)
    assert [p.text for p in passages] == [
        "One two three. Four five.",
        "Four five. Six seven eight nine.",
        "Six seven eight nine. Ten.",
        "Ten. Eleven twelve.",
    ]


def test_sentences_mode_drops_carry_that_leaves_no_room_and_cuts_long_sentences() -> None:
    text = "a b c d e. f g h i j k l m. n."
    passages = split_passages(_doc(text), "sentences", size=5, overlap=1)
    assert [p.text for p in passages] == ["a b c d e.", "f g h i j", "k l m. n."]
    no_overlap = split_passages(_doc("A. B. C."), "sentences", size=2, overlap=0)
    assert [p.text for p in no_overlap] == ["A. B.", "C."]


def test_empty_document_has_no_passages() -> None:
    assert split_passages(_doc(" \n\t "), "sentences") == []
    assert split_passages(_doc(""), "tokens") == []


@pytest.mark.parametrize(
    ("mode", "size", "overlap", "match"),
    [
        ("tokens", 0, 0, "positive"),
        ("tokens", 10, 10, "smaller than the size"),
        ("sentences", 5, -1, "0 or more"),
        ("paragraphs", 10, 1, "choose one of sentences, tokens"),
    ],
)
def test_invalid_options_are_config_errors(mode: str, size: int, overlap: int, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        split_passages(_doc("Some text."), mode, size, overlap)


def test_chunk_params_defaults() -> None:
    assert chunk_params("sentences") == (100, 1)
    assert chunk_params("tokens") == (100, 20)
    assert chunk_params("tokens", size=50) == (50, 20)
