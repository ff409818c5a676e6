"""Remove the prompt's scaffolding from a generated answer.

Small models continue the pattern they were shown: they start the answer with a copied
document header (``Document [1] (Title: Olm Castle): Olm Castle was built ...``), list the
other documents one per line, or start a new ``Question:``. ``clean_answer`` keeps what is an
answer and drops the rest:

* a document header (``Document [n] (Title: T):``, ``Document [n]:``, or ``[n] T:`` / ``[n] (T):``
  where ``T`` is the title of shown document ``n``) is removed; the text after it was copied
  from document ``n``, so the first sentence of that text is cited ``[n]`` when it carries no
  marker of its own (a citation, never a new fact);
* a second line that opens with a document header is a listing of the documents: the answer
  ends before it;
* the answer ends before a line that starts a new ``Question:`` / ``Documents:`` block;
* a leading ``Answer:`` label is removed;
* when the model stopped at its token limit, an unfinished last sentence is dropped if a
  complete sentence precedes it.

``SCAFFOLD_STOPS`` are stop strings for the generator that end the answer at the same places
during generation, so the model does not spend tokens on a listing that is then cut.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from pipeline.citations import MARKER_RE, marker_number, sentence_spans

#: Stop strings that end generation where a listing of documents or a new question begins.
SCAFFOLD_STOPS: tuple[str, ...] = ("\nDocument [", "\nDocuments:", "\nQuestion:", "\nQuestion :")

_DOC_HEADER = re.compile(r"Document\s*\[\s*(\d+)\s*\]\s*(?:\(\s*Title:[^)\n]*\)\s*)?:?\s*", re.IGNORECASE)
_TITLE_ONLY = re.compile(r"\(\s*Title:[^)\n]*\)\s*:?\s*", re.IGNORECASE)
# A header the model started and never closed: everything from it to the end of the line is
# copied scaffolding ("... Africa. [2] (Title: U.S. [1][2]"), markers included.
_TITLE_UNCLOSED = re.compile(r"\s*\(\s*Title:[^)\n]*$", re.IGNORECASE)
_BLOCK_START = re.compile(r"^\s*(?:Question|Documents?|Context|Instruction)\s*:", re.IGNORECASE)
_ANSWER_LABEL = re.compile(r"^\s*(?:Answer|A)\s*:\s*", re.IGNORECASE)
_NUMBERED_TITLE = re.compile(r"\[\s*(\d+)\s*\]\s*(?:\(\s*)?([^\n:()]{1,200}?)(?:\s*\))?\s*:\s*")
_END = re.compile(r"[.!?][\"'\u201d\u2019)]*$")


@dataclass(frozen=True)
class CleanedAnswer:
    text: str
    #: What was removed, for the answer's report (e.g. "document header [1]", "listing").
    removed: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.removed)


def clean_answer(text: str, titles: Mapping[int, str] | None = None, *, truncated: bool = False) -> CleanedAnswer:
    """``text`` without prompt scaffolding. ``titles`` maps shown document numbers to titles
    (to recognise ``[n] Title:`` echoes); ``truncated``: generation hit its token limit."""
    titles = dict(titles or {})
    removed: list[str] = []
    lines = text.strip().split("\n")
    kept: list[str] = []
    for i, line in enumerate(lines):
        if _BLOCK_START.match(line):
            if any(k.strip() for k in kept):
                removed.append("new block")
                break
            removed.append("echoed block label")  # e.g. the question repeated before the answer
            continue
        stripped, number = _strip_leading_header(line, titles)
        if number is not None:
            if any(k.strip() for k in kept):
                removed.append("listing of documents")
                break
            removed.append(f"document header [{number}]")
            line = _cite_first_sentence(stripped, number)
        if i == 0 or not any(k.strip() for k in kept):
            label = _ANSWER_LABEL.match(line)
            if label:
                removed.append("answer label")
                line = line[label.end() :]
        line, inner = _strip_inner_headers(line)
        removed.extend(inner)
        kept.append(line)
    out = "\n".join(kept).strip()
    out = re.sub(r"\n{3,}", "\n\n", out)
    if truncated:
        cut = _drop_unfinished(out)
        if cut != out:
            removed.append("unfinished last sentence")
            out = cut
    return CleanedAnswer(out, tuple(removed))


def _strip_leading_header(line: str, titles: Mapping[int, str]) -> tuple[str, int | None]:
    m = _DOC_HEADER.match(line.lstrip())
    if m:
        return line.lstrip()[m.end() :], marker_number(m.group(1))
    m = _NUMBERED_TITLE.match(line.lstrip())
    if m:
        n, title = marker_number(m.group(1)), m.group(2).strip()
        if n in titles and titles[n] and _same_title(title, titles[n]):
            return line.lstrip()[m.end() :], n
    return line, None


def _same_title(a: str, b: str) -> bool:
    norm = lambda s: " ".join(re.sub(r"[^\w\s]", " ", s.lower()).split())  # noqa: E731
    return norm(a) == norm(b)


def _strip_inner_headers(line: str) -> tuple[str, list[str]]:
    """``... Document [2] (Title: T) says ...`` -> ``... [2] says ...``; stray ``(Title: T)`` removed,
    and an unclosed ``(Title: ...`` with the rest of its line."""
    notes: list[str] = []

    def header(m: re.Match[str]) -> str:
        notes.append(f"document header [{m.group(1)}]")
        return f"[{m.group(1)}] "

    line = _DOC_HEADER.sub(header, line)
    line, k = _TITLE_ONLY.subn("", line)
    notes.extend(["title"] * k)
    line, k = _TITLE_UNCLOSED.subn("", line)
    notes.extend(["unclosed title"] * k)
    if notes:
        line = re.sub(r"\s+([,;:.!?])", r"\1", line)
    return re.sub(r"[ \t]{2,}", " ", line).strip(), notes


def _cite_first_sentence(text: str, n: int) -> str:
    """``text`` with ``[n]`` at the end of its first sentence unless that sentence has a marker."""
    text = text.strip()
    spans = sentence_spans(text)
    if not spans:
        return text
    s, e = spans[0]
    first = text[s:e]
    if MARKER_RE.search(first):
        return text
    m = _END.search(first)
    cited = f"{first[: m.start()].rstrip()} [{n}]{first[m.start() :]}" if m else f"{first} [{n}]"
    return text[:s] + cited + text[e:]


def _drop_unfinished(text: str) -> str:
    spans = sentence_spans(text)
    if len(spans) < 2:
        return text
    s, e = spans[-1]
    last = MARKER_RE.sub("", text[s:e]).rstrip()
    if _END.search(last):
        return text
    return text[:s].rstrip()
