"""Split documents into passages whose spans point back into the document text.

Invariant for every passage ``p`` of document ``doc``: ``p.text == doc.text[p.start:p.end]``.
A passage of a paged document (PDF) gets the 1-based ``page`` its first character is on, and
``page_end`` when its last character is on a later page.

* ``tokens`` mode: word tokens (``\\S+``), windows of ``size`` words that overlap by
  ``overlap`` words (defaults 100 and 20).
* ``sentences`` mode: sentences end at ``.``/``!``/``?`` followed by whitespace, and at line
  breaks; whole sentences are packed up to ``size`` words, and the last ``overlap``
  sentences of a passage start the next one (defaults 100 words and 1 sentence). A single
  sentence longer than ``size`` words is cut into ``size``-word pieces.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from typing import Literal

from pipeline.errors import ConfigError
from pipeline.types import Passage
from retrievers.ingest import Document
from retrievers.ingest_office import PageSpan

ChunkMode = Literal["sentences", "tokens"]
CHUNK_MODES: tuple[str, ...] = ("sentences", "tokens")

#: Default (size, overlap) per mode: size in words; overlap in words (tokens) or sentences.
DEFAULTS: dict[str, tuple[int, int]] = {"sentences": (100, 1), "tokens": (100, 20)}

_WORD = re.compile(r"\S+")
# A sentence ends after terminal punctuation (plus closing quotes/brackets) that is followed
# by whitespace, or at a line break.
_SENT_END = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*(?=\s)|\n")

Span = tuple[int, int]


def chunk_params(mode: str, size: int | None = None, overlap: int | None = None) -> tuple[int, int]:
    """Validated ``(size, overlap)`` for ``mode``, filling in the mode's defaults."""
    if mode not in DEFAULTS:
        raise ConfigError(f"unknown chunking mode {mode!r}: choose one of {', '.join(CHUNK_MODES)}")
    d_size, d_overlap = DEFAULTS[mode]
    size = d_size if size is None else size
    overlap = d_overlap if overlap is None else overlap
    if not isinstance(size, int) or size <= 0:
        raise ConfigError(f"chunk size must be a positive number of words, got {size!r}")
    if not isinstance(overlap, int) or overlap < 0:
        raise ConfigError(f"chunk overlap must be 0 or more, got {overlap!r}")
    if overlap >= size:
        raise ConfigError(f"chunk overlap ({overlap}) must be smaller than the size ({size})")
    return size, overlap


def word_spans(text: str, start: int = 0, end: int | None = None) -> list[Span]:
    """``(start, end)`` of every whitespace-separated word in ``text[start:end]``."""
    end = len(text) if end is None else end
    return [(m.start(), m.end()) for m in _WORD.finditer(text, start, end)]


def sentence_spans(text: str) -> list[Span]:
    """``(start, end)`` of every sentence, trimmed of surrounding whitespace."""
    spans: list[Span] = []
    pos = 0
    for m in _SENT_END.finditer(text):
        _append_trimmed(text, pos, m.end(), spans)
        pos = m.end()
    _append_trimmed(text, pos, len(text), spans)
    return spans


def _append_trimmed(text: str, start: int, end: int, out: list[Span]) -> None:
    words = word_spans(text, start, end)
    if words:
        out.append((words[0][0], words[-1][1]))


def split_passages(
    doc: Document,
    mode: str = "sentences",
    size: int | None = None,
    overlap: int | None = None,
) -> list[Passage]:
    """Cut ``doc`` into passages (pid ``"<doc_id>#<i>"``); see the module docstring."""
    size, overlap = chunk_params(mode, size, overlap)
    if mode == "tokens":
        spans = _token_windows(doc.text, size, overlap)
    else:
        spans = _sentence_windows(doc.text, size, overlap)
    starts = [p.start for p in doc.pages]
    passages = []
    for i, (s, e) in enumerate(spans):
        page, page_end = page_range(doc.pages, starts, s, e)
        passages.append(
            Passage(
                doc_id=doc.doc_id,
                text=doc.text[s:e],
                title=doc.title,
                start=s,
                end=e,
                pid=f"{doc.doc_id}#{i}",
                page=page,
                page_end=page_end,
            )
        )
    return passages


def page_range(pages: tuple[PageSpan, ...], starts: list[int], start: int, end: int) -> tuple[int | None, int | None]:
    """``(page, page_end)`` of the span ``[start, end)``: the pages of its first and last
    character (``page_end`` None when they are the same page); ``(None, None)`` without pages.
    ``starts`` is ``[p.start for p in pages]``, computed once per document."""
    if not pages:
        return None, None
    first = pages[max(0, bisect_right(starts, start) - 1)].page
    last = pages[max(0, bisect_right(starts, max(start, end - 1)) - 1)].page
    return first, (last if last != first else None)


def _token_windows(text: str, size: int, overlap: int) -> list[Span]:
    words = word_spans(text)
    step = size - overlap
    spans: list[Span] = []
    i = 0
    while i < len(words):
        j = min(i + size, len(words))
        spans.append((words[i][0], words[j - 1][1]))
        if j == len(words):
            break
        i += step
    return spans


def _sentence_windows(text: str, size: int, overlap: int) -> list[Span]:
    # Sentences longer than `size` words are cut into size-word pieces first.
    units: list[Span] = []
    counts: list[int] = []
    for s, e in sentence_spans(text):
        words = word_spans(text, s, e)
        for k in range(0, len(words), size):
            piece = words[k : k + size]
            units.append((piece[0][0], piece[-1][1]))
            counts.append(len(piece))

    spans: list[Span] = []
    i, n = 0, len(units)
    while i < n:
        j, total = i, 0
        while j < n and (j == i or total + counts[j] <= size):
            total += counts[j]
            j += 1
        spans.append((units[i][0], units[j - 1][1]))
        if j >= n:
            break
        # Carry up to `overlap` sentences, but never so many that the next new one won't fit.
        nxt = max(i + 1, j - overlap)
        while nxt < j and sum(counts[nxt:j]) + counts[j] > size:
            nxt += 1
        i = nxt
    return spans
