"""Read a corpus (a file or a folder) into :class:`Document` objects.

Supported: ``.txt``, ``.md``, ``.html``/``.htm``, ``.jsonl`` (one ``{"id", "title",
"text"}`` object per line), ``.pdf`` and ``.docx`` (read by :mod:`retrievers.ingest_office`).
Folders are walked recursively in sorted order, so the same folder always gives the same
documents in the same order. Hidden files and folders (names
starting with ``.``) are left out.

For HTML the document text is the *visible text* extracted with :mod:`html.parser`
(script/style dropped, each block element on its own line); passage spans
(``Passage.start``/``end``) refer to that extracted text, not to the HTML source.
For ``.txt``/``.md`` the text is the file's decoded content, unchanged. For ``.pdf`` it is
the extracted text of the pages that have any, and ``Document.pages`` says where each page
lies in it; for ``.docx``, the paragraphs and table cells, one per line (no pages).

Unreadable inputs never crash ingestion: binary files (NUL bytes), files that are not UTF-8,
files over the size cap (``max_file_bytes``, checked before reading, so a huge file is never
read whole), PDFs that need a password or have no text layer, damaged PDF/.docx files,
unreadable folders, empty documents and malformed jsonl lines come back in the
``skipped`` list as ``(path, reason)`` (jsonl lines as ``"file:line"``). Other extensions are
ignored silently and only counted in a debug log.

Symbolic links are followed (to files and to folders), but each real folder is walked once:
a link that leads back into a folder already walked (a loop, or a second way into the same
folder) is skipped and listed, so the walk always ends.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from pipeline.errors import CorpusError
from retrievers.ingest_office import Extracted, PageSpan, read_docx, read_pdf

log = logging.getLogger(__name__)

#: File extensions that are read, by kind.
SUPPORTED_EXTENSIONS: dict[str, str] = {
    ".txt": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".jsonl": "jsonl",
    ".pdf": "pdf",
    ".docx": "docx",
}

Skipped = tuple[str, str]

#: Files larger than this are skipped (``citerag index --max-file-mb``).
DEFAULT_MAX_FILE_MB = 50.0


@dataclass(frozen=True)
class Document:
    """One source document. ``source`` is the file it came from (``file:line`` for jsonl).

    ``pages`` (PDFs only) maps 1-based page numbers to their ranges of ``text``, in order."""

    doc_id: str
    title: str
    text: str
    source: str
    pages: tuple[PageSpan, ...] = ()


def load_documents(
    path: str | Path,
    *,
    exclude: Iterable[str | Path] = (),
    max_file_bytes: int = int(DEFAULT_MAX_FILE_MB * 1_000_000),
) -> tuple[list[Document], list[Skipped]]:
    """Read every supported document under ``path``; return ``(documents, skipped)``.

    ``exclude`` lists files or folders to leave out (for example an index folder that lives
    inside the corpus folder). Files over ``max_file_bytes`` are skipped. Raises
    :class:`CorpusError` when ``path`` does not exist.
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise CorpusError(f"corpus path does not exist: {root}: pass an existing file or folder")
    excluded = [Path(p).expanduser().resolve() for p in exclude]
    docs: list[Document] = []
    skipped: list[Skipped] = []
    seen: set[str] = set()
    ignored: Counter[str] = Counter()

    if root.is_file():
        files = [(root, root.name)]
        base = root.parent
    else:
        base = root
        walked = list(_walk(root, root, excluded, {root.resolve()}, skipped))
        files = [(f, f.relative_to(root).as_posix()) for f in walked]
        files.sort(key=lambda item: item[1])

    for file, rel in files:
        kind = SUPPORTED_EXTENSIONS.get(file.suffix.lower())
        if kind is None:
            ignored[file.suffix.lower() or "(none)"] += 1
            continue
        for item in _read_file(file, rel, kind, max_file_bytes):
            if isinstance(item, Document):
                if item.doc_id in seen:
                    skipped.append((item.source, f"duplicate document id {item.doc_id!r}"))
                    continue
                seen.add(item.doc_id)
                docs.append(item)
            else:
                skipped.append(item)

    if ignored:
        log.debug(
            "ignored %d file(s) with unsupported extensions under %s: %s",
            sum(ignored.values()),
            base,
            ", ".join(f"{ext}={n}" for ext, n in sorted(ignored.items())),
        )
    log.debug("read %d document(s), skipped %d, from %s", len(docs), len(skipped), root)
    return docs, skipped


def _walk(root: Path, folder: Path, excluded: list[Path], walked: set[Path], skipped: list[Skipped]) -> Iterator[Path]:
    """Files under ``folder``; ``walked`` holds the real paths of folders already entered."""
    try:
        entries = sorted(folder.iterdir())
    except OSError as e:
        skipped.append((folder.relative_to(root).as_posix(), f"unreadable folder: {e.strerror or e}"))
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            real = entry.resolve()
        except (OSError, RuntimeError):  # RuntimeError: a link to itself (Python < 3.13)
            skipped.append((entry.relative_to(root).as_posix(), "symlink loop: the link leads back to itself"))
            continue
        if excluded and real in excluded:
            continue
        if entry.is_dir():
            if real in walked:
                rel = entry.relative_to(root).as_posix()
                skipped.append((rel, f"symlink to a folder already read ({real}): left out to avoid a loop"))
                continue
            walked.add(real)
            yield from _walk(root, entry, excluded, walked, skipped)
        elif entry.is_file():
            yield entry


def _read_bytes(file: Path, rel: str, max_bytes: int) -> bytes | Skipped:
    try:
        with file.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > max_bytes:
                return (rel, _too_big(size, max_bytes))
            raw = f.read(max_bytes + 1)  # the file may have grown since fstat
    except OSError as e:
        return (rel, f"unreadable: {e.strerror or e}")
    if len(raw) > max_bytes:
        return (rel, _too_big(len(raw), max_bytes))
    return raw


def _decode(file: Path, rel: str, max_bytes: int) -> str | Skipped:
    raw = _read_bytes(file, rel, max_bytes)
    if isinstance(raw, tuple):
        return raw
    if b"\x00" in raw:
        return (rel, "binary file (contains NUL bytes)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return (rel, "not UTF-8 text: re-encode the file as UTF-8")


def _too_big(size: int, max_bytes: int) -> str:
    return (
        f"larger than the size cap ({size / 1e6:.1f} MB > {max_bytes / 1e6:g} MB): split it, "
        "or raise the cap with --max-file-mb"
    )


def _read_file(file: Path, rel: str, kind: str, max_bytes: int) -> Iterator[Document | Skipped]:
    if kind in ("pdf", "docx"):
        yield _read_office(file, rel, kind, max_bytes)
        return
    text = _decode(file, rel, max_bytes)
    if isinstance(text, tuple):
        yield text
        return
    if kind == "jsonl":
        yield from _read_jsonl(text, rel)
        return
    if kind == "html":
        title, body = html_to_text(text)
        title = title or file.stem
    elif kind == "markdown":
        body = text
        title = markdown_title(text) or file.stem
    else:
        body = text
        title = text_title(text) or file.stem
    if not body.strip():
        yield (rel, "empty document")
        return
    yield Document(doc_id=rel, title=title, text=body, source=rel)


def _read_office(file: Path, rel: str, kind: str, max_bytes: int) -> Document | Skipped:
    raw = _read_bytes(file, rel, max_bytes)
    if isinstance(raw, tuple):
        return raw
    got: Extracted | str = read_pdf(raw, rel) if kind == "pdf" else read_docx(raw)
    if isinstance(got, str):
        return (rel, got)
    return Document(doc_id=rel, title=got.title or file.stem, text=got.text, source=rel, pages=got.pages)


def _read_jsonl(text: str, rel: str) -> Iterator[Document | Skipped]:
    for lineno, line in enumerate(text.splitlines(), start=1):
        where = f"{rel}:{lineno}"
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            yield (where, f"invalid JSON: {e.msg}")
            continue
        if not isinstance(obj, dict):
            yield (where, 'not a JSON object: expected {"id", "title", "text"}')
            continue
        doc_id, body = obj.get("id"), obj.get("text")
        if doc_id is None or isinstance(doc_id, (dict, list, bool)) or str(doc_id) == "":
            yield (where, 'missing "id"')
            continue
        if not isinstance(body, str):
            yield (where, 'missing "text" (a string)')
            continue
        if not body.strip():
            yield (where, "empty document")
            continue
        title = obj.get("title")
        yield Document(
            doc_id=str(doc_id),
            title=title if isinstance(title, str) else "",
            text=body,
            source=where,
        )


_MD_H1 = re.compile(r"^ {0,3}#[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


def text_title(text: str) -> str:
    """A plain-text file's title: a short first line, not a sentence, then a blank line; else ""."""
    head = text.lstrip("\ufeff").split("\n", 2)
    first = head[0].strip()
    if len(head) >= 2 and not head[1].strip() and 0 < len(first) <= 120 and first[-1] not in ".!?:;,":
        return first
    return ""


def markdown_title(text: str) -> str:
    """The first ``# heading`` of a Markdown text (outside code fences), or ""."""
    in_fence = False
    for line in text.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        m = _MD_H1.match(line)
        if m:
            return m.group(1).strip()
    return ""


_BLOCK_TAGS = frozenset(
    "address article aside blockquote br dd details div dl dt fieldset figcaption figure "
    "footer form h1 h2 h3 h4 h5 h6 header hr li main nav ol p pre section summary table "
    "tbody thead tfoot tr td th ul caption".split()
)
_SKIP_TAGS = frozenset({"script", "style", "noscript", "template", "title"})


class _TextExtractor(HTMLParser):
    """Visible text of an HTML page; block elements become newlines."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title_parts: list[str] = []
        self.h1_parts: list[str] = []
        self._skip_depth = 0
        self._in_title = False
        self._in_h1 = False
        self._h1_done = False
        self._pre_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self._skip_depth += 1
            self._in_title = self._in_title or tag == "title"
            return
        if tag == "h1" and not self._h1_done:
            self._in_h1 = True
        if tag == "pre":
            self._pre_depth += 1
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skip_depth = max(0, self._skip_depth - 1)
            if tag == "title":
                self._in_title = False
            return
        if tag == "h1" and self._in_h1:
            self._in_h1 = False
            self._h1_done = True
        if tag == "pre":
            self._pre_depth = max(0, self._pre_depth - 1)
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title_parts.append(data)
        if self._skip_depth:
            return
        if self._in_h1:
            self.h1_parts.append(data)
        if self._pre_depth:
            self.parts.append(data)
        else:
            self.parts.append(re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> tuple[str, str]:
    """``(title, visible_text)`` of an HTML page: ``<title>`` or the first ``<h1>``."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    text = "".join(parser.parts)
    text = re.sub(r"[ \t]*\n[ \t]*", "\n", text)  # no spaces around line breaks
    text = re.sub(r"\n{2,}", "\n", text).strip()
    title = " ".join("".join(parser.title_parts).split())
    if not title:
        title = " ".join("".join(parser.h1_parts).split())
    return title, text
