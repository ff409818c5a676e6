"""Text of PDF and Word (.docx) files, for :mod:`retrievers.ingest`.

A PDF's document text is the text pypdf extracts from each page, the pages joined by
:data:`PAGE_SEPARATOR` (a form feed on a line of its own; a page without text is an empty
string between two of them). So the page of any character is 1 + the form feeds before it,
and :class:`PageSpan` records where each page with text lies (1-based page numbers of the
file: a page without text leaves a gap in the numbers, never a shift). Passage spans refer
to that extracted text, as they do for HTML.

A .docx file's text is its paragraphs and the text of its table cells, in document order,
one per line. Word lays pages out only when it renders, so a .docx has no page numbers.

Files that cannot be read come back as a reason (a string), never as an exception: a PDF
that needs a password, one with no text layer (scanned or image-only pages), and files
the parsers reject (truncated, damaged, not what the extension says). pypdf and
python-docx are imported here only, inside the functions, so ``citerag --help`` stays fast.
"""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass

from pipeline.types import PAGE_BREAK

log = logging.getLogger(__name__)

#: Between the texts of two pages (a page without text included): the page break on a line of
#: its own. The newlines keep words apart for tokenizers that drop control characters (BERT's).
PAGE_SEPARATOR = f"\n{PAGE_BREAK}\n"

_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # a Compound File: an old .doc, or a protected .docx


@dataclass(frozen=True)
class PageSpan:
    """Page ``page`` (1-based) of a file is ``text[start:end]`` of its extracted text."""

    page: int
    start: int
    end: int


@dataclass(frozen=True)
class Extracted:
    """The text read from a PDF or .docx file; ``pages`` is empty for a .docx."""

    title: str
    text: str
    pages: tuple[PageSpan, ...] = ()


def read_pdf(data: bytes, name: str = "a PDF") -> Extracted | str:
    """The text of a PDF's pages that have any, or the reason the file cannot be indexed."""
    from pypdf import PasswordType, PdfReader
    from pypdf.errors import DependencyError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            return "encrypted PDF (it needs a password): save a copy without the password and index that"
        n_pages = len(reader.pages)
    except DependencyError as e:
        return f"encrypted PDF that pypdf cannot decrypt here ({e}): install the 'cryptography' package"
    except Exception as e:  # noqa: BLE001 - any parser error on a damaged file means "skip it"
        return f"not a readable PDF ({_brief(e)}): the file is damaged or truncated; export or download it again"

    texts: list[str] = []
    failed, error = 0, ""
    for i in range(n_pages):
        try:
            texts.append(unwrap_lines(_clean(reader.pages[i].extract_text() or "")))
        except Exception as e:  # noqa: BLE001 - one damaged page must not lose the others
            failed, error = failed + 1, _brief(e)
            texts.append("")
    pages: list[PageSpan] = []
    pos = 0
    for number, text in enumerate(texts, start=1):
        if text:
            pages.append(PageSpan(number, pos, pos + len(text)))
        pos += len(text) + len(PAGE_SEPARATOR)
    if not pages:
        if failed:
            return f"no page of the PDF could be read ({failed} failed, last: {error}): the file is damaged"
        return (
            f"no text layer in any of its {n_pages} page(s) (a scanned or image-only PDF): "
            "run OCR on it (for example ocrmypdf) and index the result"
        )
    if len(pages) < n_pages:
        log.info(
            "%s: %d of %d page(s) have no extractable text; indexed the others", name, n_pages - len(pages), n_pages
        )
    return Extracted(title=_pdf_title(reader), text=PAGE_SEPARATOR.join(texts), pages=tuple(pages))


def read_docx(data: bytes) -> Extracted | str:
    """The paragraphs and table cells of a .docx file, one per line, or why it cannot be read."""
    if data.startswith(_OLE_MAGIC):
        return (
            "not a .docx package (a password-protected document or an old binary .doc): "
            "save it from Word as an unprotected .docx"
        )
    import docx

    try:
        document = docx.Document(io.BytesIO(data))
        lines, heading = _docx_lines(document)
        title = (document.core_properties.title or "").strip()
    except Exception as e:  # noqa: BLE001 - any parser error on a damaged file means "skip it"
        return f"not a readable .docx ({_brief(e)}): the file is damaged or truncated; save it again from Word"
    text = "\n".join(lines)
    if not text:
        return "empty document"
    return Extracted(title=title or heading, text=text)


def _docx_lines(container: object) -> tuple[list[str], str]:
    """Non-empty paragraph and cell lines of a body (or cell) in order, and its first heading."""
    from docx.table import Table

    lines: list[str] = []
    heading = ""
    for block in container.iter_inner_content():  # type: ignore[attr-defined]
        if isinstance(block, Table):
            # A merged cell is listed once per grid cell it covers; the set holds the XML
            # elements themselves (alive, so lxml gives the same object back for the same cell).
            seen: set[object] = set()
            for row in block.rows:
                for cell in row.cells:
                    if cell._tc in seen:
                        continue
                    seen.add(cell._tc)
                    lines.extend(_docx_lines(cell)[0])
            continue
        text = _clean(block.text)
        if not text:
            continue
        style = (block.style.name or "") if block.style is not None else ""
        if not heading and (style == "Title" or style.startswith("Heading")):
            heading = " ".join(text.split())
        lines.append(text)
    return lines, heading


def _pdf_title(reader: object) -> str:
    try:
        meta = reader.metadata  # type: ignore[attr-defined]
        title = meta.title if meta is not None else None
    except Exception:  # noqa: BLE001 - a damaged info dictionary only costs the title
        return ""
    return " ".join(title.split()) if isinstance(title, str) else ""


def _clean(text: str) -> str:
    """Text without NUL characters, page breaks of its own (a form feed would count as one more
    page) and surrounding whitespace. Spans are taken after this."""
    return text.replace("\x00", "").replace(PAGE_BREAK, "\n").strip()


#: A line that ends a sentence, a clause or a quotation: its newline is kept.
_LINE_END = re.compile(r"[.!?:;\"\u201d\u2019)\]]$")
#: A line that starts a list item: the newline before it is kept.
_ITEM_START = re.compile(r"^(?:[-\u2022*\u2013\u25aa\u25e6]\s|\(?\d{1,3}[.)]\s|\(?[a-z][.)]\s)")
#: A line at least this share of the page's longest line is a full line, wrapped by the layout.
FULL_LINE = 0.6


def unwrap_lines(page: str) -> str:
    """A PDF page's text with the layout's line wraps joined into one line per paragraph.

    pypdf ends every printed line with a newline, and the chunker cuts sentences at newlines,
    so without this a PDF's passages break mid-sentence and their one-sentence overlap is one
    printed line. A newline is a wrap, and becomes a space, when its line is a full line (at
    least ``FULL_LINE`` of the page's longest), does not end a sentence or clause, and the next
    line does not start a list item. After a word's hyphen the lines join without a space
    ("one-mile-" + "wide"); a spaced dash ("years -" + "either") keeps its space. Headings, short
    last lines of paragraphs and list items keep their newlines.
    Spans are taken after this: they refer to the unwrapped text."""
    lines = page.split("\n")
    if len(lines) < 2:
        return page
    longest = max(len(line.rstrip()) for line in lines)
    out = [lines[0]]
    for printed, line in zip(lines, lines[1:]):  # printed: the line before ``line`` on the page
        printed = printed.rstrip()
        wrapped = (
            printed
            and line.strip()
            and len(printed) >= FULL_LINE * longest
            and not _LINE_END.search(printed)
            and not _ITEM_START.match(line.lstrip())
        )
        prev = out[-1].rstrip()
        if not wrapped:
            out.append(line)
        elif printed[-2:-1].isalpha() and printed.endswith("-") and line.lstrip()[:1].islower():
            out[-1] = prev + line.lstrip()
        else:
            out[-1] = prev + " " + line.lstrip()
    return "\n".join(out)


def _brief(e: BaseException) -> str:
    msg = " ".join(str(e).split())
    return f"{type(e).__name__}: {msg[:160]}" if msg else type(e).__name__
