"""Sentence splitting and citation parsing of generated answers.

Markers ``[1]``, ``[1][2]``, ``[1, 2]`` are parsed, and the other forms people and models
write where they are unambiguous: ranges ``[1-3]``/``[1–3]``, named ``[Doc 2]``/``[Source 2]``,
and the dagger form ``[2†]``/``【2†source】``. Markers that trail a sentence's full stop
("Paris is the capital. [1] It ...") belong to that sentence. Numbers are resolved against
the passages that were shown to the generator; a number that points at no shown passage is
dropped and reported, never output as a citation. Sentences left without a citation can be
given the best supporting shown passage post hoc (``PostHocCiter``), flagged ``post_hoc``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from pipeline.types import Passage, Sentence

if TYPE_CHECKING:
    from pipeline.protocols import Embedder

#: One cited item: a number ("2"), a range ("1-3", "1–3", "1—3"), named ("Doc 2", "Document 2",
#: "Source 2", "Passage 2", "Ref. 2", case-insensitive), or in the dagger form ChatGPT writes
#: ("2†", "2†source", "2†L3-L9": what follows the dagger is a locator, not a number). The locator
#: holds no space, separator or bracket, so a group has one reading and matching stays linear.
_ITEM = (
    r"(?i:(?:doc(?:ument)?|source|passage|ref(?:erence)?)s?\.?\s*)?"
    r"\d+(?:\s*[-\u2013\u2014]\s*\d+)?(?:\u2020[^\s,;\[\]\u3010\u3011\u2020]{0,40})?"
)
#: One bracket group of citation items: [3], [1, 2], [1;2], [1-3], [Doc 2], [2†], 【2†source】.
_GROUP = rf"(?:\[\s*{_ITEM}(?:\s*[,;]\s*{_ITEM})*\s*\]|\u3010\s*{_ITEM}(?:\s*[,;]\s*{_ITEM})*\s*\u3011)"
MARKER_RE = re.compile(_GROUP)
#: The numbers of one item: its first number, and a range's end.
_ITEM_NUMBERS = re.compile(r"(\d+)(?:\s*[-\u2013\u2014]\s*(\d+))?(?:\u2020[^\s,;\[\]\u3010\u3011\u2020]*)?")
#: A range wider than this many passages is not read as a range but as its two ends: "[2019-2020]"
#: is a pair of years far more often than it is 2 passages, and "[1-400]" cites nothing useful.
MAX_RANGE = 20
_TRAILING_MARKERS = re.compile(rf"(?:\s*{_GROUP})+")
# A sentence ends at . ! ? (possibly repeated, possibly followed by closing quotes or brackets
# and by citation groups) when whitespace or the end of the text follows.
_END_RE = re.compile(rf"[.!?]+[\"'\u201d\u2019)]*(?:\s*{_GROUP})*(?=\s|$)")
_ABBREVIATIONS = frozenset(
    (
        "mr mrs ms dr prof sr jr st vs etc e.g i.e fig no vol al approx dept est inc ltd co corp "
        "jan feb mar apr jun jul aug sep sept oct nov dec u.s u.k"
    ).split()
)


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of ``text`` (whitespace trimmed, markers attached).

    Kept over a library splitter by measurement (bench/bench_splitter.py, each library given the
    same line and marker handling): on 315 distinct SmolLM2 answers in bench/out, NLTK's Punkt
    (``punkt``, what eval/ uses for ALCE) splits 4 differently and is wrong in 3 ("current U.S. |
    Senators", "No. | 1 Group RAF", "On! | : The Beat") and right in 1 ("Washington, D.C. cast");
    pysbd splits 6 differently, wrong in 3 (a closing ")" left as a sentence twice, "On! | :") and
    right in 3 (a list's "1. [1]" kept with its item twice, "D.C. cast"), at 60x the time, and has
    had no release since 2021. On the 2,600 Wikipedia passages of the NQ corpus, Punkt cuts
    after "No." 50 times and after "e.g."/"i.e."/"etc." 25 times; the regex cuts after "c."
    and "a.m."/"p.m." about 14 times each and misses a cut after "1880s." or "Wrigley's." 13 times.
    """
    spans: list[tuple[int, int]] = []
    for block in re.finditer(r"[^\n]+", text):
        b_start, chunk = block.start(), block.group()
        cut = 0
        for m in _END_RE.finditer(chunk):
            if _is_abbreviation(chunk, m.start()):
                continue
            spans.append((b_start + cut, b_start + m.end()))
            cut = m.end()
        spans.append((b_start + cut, b_start + len(chunk)))
    trimmed = [_trim(text, s, e) for s, e in spans]
    out: list[tuple[int, int]] = []
    for s, e in trimmed:
        if s >= e:
            continue
        lead = _TRAILING_MARKERS.match(text, s, e)
        if lead and out:
            # "... full stop.\n[2] Next" : the markers belong to the previous sentence.
            ps, _ = out[-1]
            out[-1] = (ps, lead.end())
            s, e = _trim(text, lead.end(), e)
            if s >= e:
                continue
        out.append((s, e))
    return out


def _trim(text: str, s: int, e: int) -> tuple[int, int]:
    while s < e and text[s].isspace():
        s += 1
    while e > s and text[e - 1].isspace():
        e -= 1
    return s, e


def _is_abbreviation(chunk: str, dot: int) -> bool:
    if chunk[dot] != ".":
        return False
    word = re.search(r"([A-Za-z.]+)$", chunk[:dot])
    if not word:
        # A number followed by a dot ("in 1937. It") ends a sentence; "3.5" never matches here.
        return False
    w = word.group(1).lower().rstrip(".")
    if w in _ABBREVIATIONS:
        return True
    # Initials: "J. Strauss", "U.S."
    return len(w.replace(".", "")) == 1 and w.isalpha() and chunk[dot + 1 : dot + 3].strip()[:1].isupper()


#: A citation number longer than this many digits (leading zeros aside) names no passage.
MAX_MARKER_DIGITS = 9
#: What such a number reads as: out of range for any list of passages, and an int Python can hold.
OUT_OF_RANGE = 10**MAX_MARKER_DIGITS


def marker_number(digits: str) -> int:
    """The value of a citation's digits, without ever calling ``int`` on thousands of them
    (Python refuses strings of more than 4,300 digits with a ValueError): a number of more than
    ``MAX_MARKER_DIGITS`` digits is ``OUT_OF_RANGE``, which no range check accepts."""
    digits = digits.lstrip("0") or "0"
    return OUT_OF_RANGE if len(digits) > MAX_MARKER_DIGITS else int(digits)


def group_numbers(group: str) -> list[int]:
    """The numbers one marker group cites, in order: ``[1-3]`` is 1, 2, 3; ``[3-1]`` (reversed)
    and ranges wider than ``MAX_RANGE`` are read as their two ends, since what they mean is not
    clear; ``[2†L3-L9]`` is 2 (the dagger's locator is not a citation)."""
    out: list[int] = []
    for m in _ITEM_NUMBERS.finditer(group):
        a = marker_number(m.group(1))
        if m.group(2) is None:
            out.append(a)
            continue
        b = marker_number(m.group(2))
        out.extend(range(a, b + 1) if a <= b <= a + MAX_RANGE else (a, b))
    return out


def parse_markers(text: str) -> list[int]:
    """Citation numbers in order of first appearance (duplicates removed)."""
    nums: list[int] = []
    for m in MARKER_RE.finditer(text):
        for n in group_numbers(m.group()):
            if n not in nums:
                nums.append(n)
    return nums


def strip_markers(text: str) -> str:
    """The text without citation markers, spaces before punctuation tidied."""
    out = MARKER_RE.sub("", text)
    out = re.sub(r"\s+([.,;:!?])", r"\1", out)
    return re.sub(r"[ \t]{2,}", " ", out).strip()


#: A sentence's final punctuation (a CJK full stop too), with any closing quotes or brackets.
_FINAL_PUNCT = re.compile(r"[.!?\u3002]+[\"'\u201d\u2019)\]]*$")


def with_markers(content: str, numbers: Sequence[int]) -> str:
    """``content`` with ``[n]`` markers placed before its final punctuation (the inverse of
    :func:`strip_markers` for one sentence), where ALCE's prompts and Punkt expect them."""
    marks = "".join(f"[{n}]" for n in numbers)
    if not marks:
        return content
    m = _FINAL_PUNCT.search(content)
    if m:
        return f"{content[: m.start()].rstrip()} {marks}{content[m.start() :]}"
    return f"{content} {marks}"


class PostHocCiter(Protocol):
    def best(
        self, sentences: Sequence[str], passages: Sequence[Passage], question: str = ""
    ) -> list[tuple[int | None, float]]:
        """For each sentence, the 0-based index of the passage that best supports it (or None)."""
        ...


@dataclass
class EmbeddingPostHocCiter:
    """Attach the shown passage that best matches the sentence, read in its question's context.

    A short answer sentence ("Wilhelm Röntgen.") says little on its own, so each sentence is
    embedded together with the question it answers, and a passage's score is that cosine
    plus the passage's cosine with the question (a cited passage must be about what was
    asked). A passage is attached only when the sentence-in-context cosine reaches
    ``min_similarity``; the reported score is that cosine. Measured on 200 NQ-open answers
    of SmolLM2-135M: the gold passage was cited for 0.575 of questions by sentence-only
    similarity and for 0.865 with this score (bench/bench_ask.py, BENCHMARKS.md).
    """

    embedder: Embedder
    min_similarity: float = 0.3

    def best(
        self, sentences: Sequence[str], passages: Sequence[Passage], question: str = ""
    ) -> list[tuple[int | None, float]]:
        import numpy as np

        if not sentences or not passages:
            return [(None, 0.0) for _ in sentences]
        q = question.strip()
        claims = [f"{q} {s}" if q else s for s in sentences]
        texts = claims + [_passage_text(p) for p in passages] + ([q] if q else [])
        vecs = np.asarray(self.embedder(texts), dtype=np.float32)
        vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        n, m = len(claims), len(passages)
        sims = vecs[:n] @ vecs[n : n + m].T
        relevance = vecs[n + m :] @ vecs[n : n + m].T if q else np.zeros((1, m), dtype=np.float32)
        ranking = sims + relevance
        out: list[tuple[int | None, float]] = []
        for row, sim in zip(ranking, sims):
            j = int(np.argmax(row))
            score = float(sim[j])
            out.append((j if score >= self.min_similarity else None, score))
        return out


def _passage_text(p: Passage) -> str:
    return f"{p.title}: {p.text}" if p.title else p.text


@dataclass(frozen=True)
class ParsedAnswer:
    sentences: tuple[Sentence, ...]
    #: Every out-of-range number the generator wrote, in order.
    dropped: tuple[int, ...]
    post_hoc_count: int


def cite_answer(
    text: str,
    shown: Sequence[Passage],
    post_hoc: PostHocCiter | None = None,
    question: str = "",
) -> ParsedAnswer:
    """Split ``text`` into sentences and resolve their markers against ``shown`` (numbered from 1)."""
    sentences: list[Sentence] = []
    dropped: list[int] = []
    for s, e in sentence_spans(text):
        seg = text[s:e]
        nums = parse_markers(seg)
        valid = tuple(n for n in nums if 1 <= n <= len(shown))
        bad = tuple(n for n in nums if not 1 <= n <= len(shown))
        dropped.extend(bad)
        sentences.append(Sentence(text=seg, start=s, end=e, citations=valid, dropped=bad))
    uncited = [i for i, st in enumerate(sentences) if not st.citations and strip_markers(st.text)]
    count = 0
    if post_hoc is not None and uncited and shown:
        picks = post_hoc.best([strip_markers(sentences[i].text) for i in uncited], shown, question)
        for i, (j, score) in zip(uncited, picks):
            if j is None:
                continue
            st = sentences[i]
            sentences[i] = Sentence(st.text, st.start, st.end, (j + 1,), True, st.dropped, score)
            count += 1
    return ParsedAnswer(tuple(sentences), tuple(dropped), count)
