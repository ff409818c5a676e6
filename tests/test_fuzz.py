"""Property-based fuzzing of every parser a user's text or file reaches (issue 12).

The rule for all of them: any input either parses or raises citerag's ``InputError`` (the CLI
turns it into one line and exit code 2, the server into a 4xx). Never a traceback: no
ValueError from ``int``, no UnicodeDecodeError, no RecursionError from deep JSON, no
KeyError or TypeError from a field of the wrong type.

Inputs are drawn both as raw text and bytes (what an attacker or a broken tool writes) and as
near-valid structures (what a user's slightly wrong file looks like), since purely random
bytes rarely get past the first check.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from eval.alce import cited_ids, plan_sentence, read_output, split_output
from eval.formats import read_predictions
from eval.saliency.context import read_answers
from pipeline.citations import (
    MARKER_RE,
    MAX_RANGE,
    OUT_OF_RANGE,
    marker_number,
    parse_markers,
    sentence_spans,
    strip_markers,
    with_markers,
)
from pipeline.cleaning import clean_answer
from pipeline.errors import InputError
from pipeline.io import read_questions, read_records
from verifiers.claims import split_claims
from verifiers.judge_train import read_pairs

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text that looks like what a generator writes: words, citation groups (well and badly formed),
# long digit runs, sentence ends, brackets, quotes, newlines, emoji and combining marks.
_PIECES = st.one_of(
    st.sampled_from(
        [
            " ",
            ". ",
            "? ",
            "!",
            "\n",
            "[",
            "]",
            ",",
            ";",
            "[1]",
            "[2, 3]",
            "[1][2]",
            "[0]",
            "[ 4 ; 5 ]",
            "[1-3]",
            "[3\u20131]",
            "[2019-2020]",
            "[Doc 2]",
            "[source 1, 4]",
            "[2\u2020]",
            "[2\u2020L3-L9]",
            "\u30102\u2020source\u3011",
            "Document [1] (Title: X): ",
            "(Title: Olm",
            "Mr. ",
            "U.S. ",
            "3.5",
            '"',
            "\u201d",
            "\U0001f600",
            "e\u0301",
            "\u2028",
        ]
    ),
    st.text(min_size=1, max_size=12),
    st.integers(min_value=1, max_value=6000).map(lambda n: "[" + "9" * n),
    st.integers(min_value=1, max_value=6000).map(lambda n: "[" + "0" * n + "1]"),
)
GENERATED = st.lists(_PIECES, max_size=40).map("".join)
LONG_DIGITS = "The bridge opened in 1902 [" + "7" * 5000 + "]. It was rebuilt [1" + "0" * 4400 + "2]."


# ------------------------------------------------------------------ citation markers


@FUZZ
@given(GENERATED)
@example(LONG_DIGITS)
@example("[" + "1" * 100_000)
def test_citation_markers_never_raise(text: str) -> None:
    nums = parse_markers(text)
    assert all(isinstance(n, int) and 0 <= n <= OUT_OF_RANGE for n in nums)
    assert len(nums) == len(set(nums))
    stripped = strip_markers(text)
    assert isinstance(stripped, str)
    # Every number written in a well-formed group is found, in order of first appearance:
    # a short ascending range stands for each number in it, any other range for its ends,
    # and what follows a dagger is a locator, not a number.
    written: list[int] = []
    for m in MARKER_RE.finditer(text):
        for item in re.split(r"[,;]", m.group()[1:-1]):
            ends = [marker_number(d) for d in re.findall(r"\d+", item.split("\u2020")[0])]
            if len(ends) == 2 and ends[0] <= ends[1] <= ends[0] + MAX_RANGE:
                ends = list(range(ends[0], ends[1] + 1))
            written.extend(ends)
    assert nums == list(dict.fromkeys(written))


@FUZZ
@given(st.text(alphabet="0123456789", min_size=1, max_size=8000))
def test_marker_number_is_exact_when_short_and_out_of_range_when_long(digits: str) -> None:
    n = marker_number(digits)
    significant = digits.lstrip("0") or "0"
    if len(significant) <= 9:
        assert n == int(significant)
    else:
        assert n == OUT_OF_RANGE


@FUZZ
@given(GENERATED, st.lists(st.integers(min_value=1, max_value=20), max_size=4))
def test_with_markers_round_trips_the_numbers(text: str, numbers: list[int]) -> None:
    content = strip_markers(text).rstrip(" .!?[")
    marked = with_markers(content, numbers)
    assert strip_markers(marked) == strip_markers(content)


# ------------------------------------------------------------------ sentence splitting


@FUZZ
@given(GENERATED)
@example(LONG_DIGITS)
def test_sentence_spans_are_ordered_disjoint_and_inside_the_text(text: str) -> None:
    spans = sentence_spans(text)
    last = 0
    for s, e in spans:
        assert last <= s < e <= len(text)
        assert text[s:e].strip() == text[s:e]
        last = e


@FUZZ
@given(GENERATED)
@example(LONG_DIGITS)
def test_claims_split_and_cleaning_never_raise(text: str) -> None:
    for claim in split_claims(text):
        assert text[claim.start : claim.end] == claim.sentence
        assert all(isinstance(n, int) for n in claim.markers)
    cleaned = clean_answer(text, {1: "X", 2: "Olm Castle"})
    assert isinstance(cleaned.text, str)


@FUZZ
@given(GENERATED, st.integers(min_value=0, max_value=10))
@example(LONG_DIGITS, 5)
def test_alce_sentence_reading_never_raises(text: str, n_docs: int) -> None:
    for sentence in split_output(text):
        ids = cited_ids(sentence)
        plan = plan_sentence(sentence, n_docs)
        if any(i < 0 or i >= n_docs for i in ids):
            assert plan.status == "out_of_range"
    read_output(text, "q?")


# ------------------------------------------------------------------ files: questions, revise input, eval input

_JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20))
JSON_VALUE = st.recursive(
    _JSON_LEAF,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12,
)
_KEYS = [
    "question",
    "text",
    "answer",
    "output",
    "id",
    "docs",
    "passages",
    "sentences",
    "citations",
    "title",
    "start",
    "end",
    "doc_id",
    "data",
    "qa_pairs",
    "answers",
    "claims",
    "premise",
    "hypothesis",
    "label",
    "claim",
    "evidence",
]


@st.composite
def near_valid_row(draw: st.DrawFn) -> Any:
    """An object with the keys our readers look for, holding values of any JSON type."""
    keys = draw(st.lists(st.sampled_from(_KEYS), min_size=1, max_size=6, unique=True))
    row = {k: draw(JSON_VALUE) for k in keys}
    if draw(st.booleans()) and "docs" in row:
        row["docs"] = [{"title": draw(st.text(max_size=5)), "text": draw(JSON_VALUE)}]
    if draw(st.booleans()) and "sentences" in row:
        row["sentences"] = [
            draw(st.one_of(JSON_VALUE, st.just({"text": "a.", "start": draw(JSON_VALUE), "end": 2}))),
            {"text": "a.", "start": 0, "end": 2, "citations": draw(JSON_VALUE)},
        ]
    if draw(st.booleans()) and "passages" in row:
        row["passages"] = [
            {
                "text": "Cats sleep.",
                **{
                    k: draw(JSON_VALUE)
                    for k in draw(st.sets(st.sampled_from(["start", "end", "score", "shown", "title"])))
                },
            },
            draw(st.one_of(JSON_VALUE, st.just({"text": "x", "shown": False}))),
        ]
    return row


@st.composite
def file_bytes(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["rows", "json", "bytes", "deep", "text"]))
    if kind == "rows":
        rows = draw(st.lists(st.one_of(near_valid_row(), JSON_VALUE), min_size=0, max_size=5))
        return "\n".join(json.dumps(r) for r in rows).encode()
    if kind == "json":
        return json.dumps(
            draw(st.one_of(near_valid_row(), JSON_VALUE, st.lists(near_valid_row(), max_size=3)))
        ).encode()
    if kind == "deep":
        depth = draw(st.integers(min_value=500, max_value=200_000))
        return b"[" * depth + b"]" * draw(st.sampled_from([0, depth]))
    if kind == "text":
        return draw(GENERATED).encode("utf-8", "surrogatepass")
    return draw(st.binary(max_size=200))


def _write(data: bytes, suffix: str) -> Path:
    fd, name = tempfile.mkstemp(suffix=suffix)
    with open(fd, "wb") as fh:
        fh.write(data)
    return Path(name)


READERS = {
    "questions": lambda p: read_questions(p),
    "revise-input": lambda p: read_records(p, "text"),
    "eval-predictions": lambda p: read_predictions(p),
    "eval-alce": lambda p: read_predictions(p, "alce"),
    "eval-ask": lambda p: read_predictions(p, "ask"),
    "attribute-answers": lambda p: read_answers(str(p)),
    "judge-pairs": lambda p: read_pairs(p),
}


@pytest.mark.parametrize("reader", sorted(READERS))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=file_bytes())
@example(data=b"\xff\xfe{" + b"\x00" * 10)
@example(data=b"[" * 100_000)
@example(data=b'{"question": "' + b"\xed\xa0\x80" + b'"}')
@example(data=b'{"question": "q", "answer": "a [' + b"9" * 5000 + b']", "passages": []}')
def test_input_files_parse_or_raise_input_error(reader: str, data: bytes) -> None:
    path = _write(data, ".json" if data[:1] in (b"[", b"{") and reader.startswith("eval") else ".jsonl")
    try:
        READERS[reader](path)
    except InputError as exc:
        assert str(exc).strip()  # a message naming the problem, not an empty error
    finally:
        path.unlink()
