"""PDF and .docx ingestion: real files written with fpdf2 and python-docx, read with pypdf and
python-docx, indexed by the real `citerag index` (BM25 + FAISS + MiniLM); pages carried from
the passage to the index, the retrieved passage, the answer's JSON and its text output."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import test_web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_web import final_shown, wait

from pipeline.prompting import truncate_passage
from pipeline.types import PAGE_BREAK, Passage, page_label
from retrievers.chunking import split_passages
from retrievers.index import load_index, read_passages
from retrievers.ingest import Document, load_documents
from retrievers.ingest_office import PAGE_SEPARATOR, Extracted, read_docx, read_pdf, unwrap_lines

#: The headless Chromium of the web page's tests (skips where no browser is installed).
browser = test_web.browser

#: The report's pages: the answer to the test question is on page 2 only.
REPORT_PAGES = [
    "Bridge Report. The city council planned a crossing of the strait for many years. "
    "Engineers studied the winds, the fog and the depth of the water before any design was chosen.",
    "The Golden Gate Bridge opened in 1937 after four years of construction. "
    "It spans the Golden Gate strait between San Francisco and Marin County.",
    "Maintenance crews repaint the towers in International Orange. "
    "The paint protects the steel from salt air and is renewed section by section.",
]
#: A PDF whose pages 1 and 3 are blank (no text layer): pages 2 and 4 must keep their numbers.
PARTIAL_PAGES = [
    None,
    "Volcanoes release magma through openings in the crust of the Earth.",
    None,
    "Lava flows cool into new basalt rock along the flanks of the volcano.",
]


def write_pdf(path: Path, pages: list[str | None], title: str | None = None) -> bytes:
    """A PDF with one page per item: its text, or (None) only a filled rectangle (no text layer)."""
    from fpdf import FPDF

    pdf = FPDF()
    if title:
        pdf.set_title(title)
    pdf.set_font("Helvetica", size=12)
    for text in pages:
        pdf.add_page()
        if text is None:
            pdf.rect(20, 20, 80, 60, style="F")
        else:
            pdf.multi_cell(0, 8, text)
    data = bytes(pdf.output())
    path.write_bytes(data)
    return data


def write_encrypted(path: Path, data: bytes) -> None:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="AES-256")
    with path.open("wb") as f:
        writer.write(f)


def write_docx(path: Path) -> None:
    import docx

    d = docx.Document()
    d.add_heading("Clock Tower Memo", level=1)
    d.add_paragraph("The clock tower has four faces and a bell cast in 1858.")
    table = d.add_table(rows=2, cols=2)
    table.cell(0, 0).text = "Height"
    table.cell(0, 1).text = "96 metres"
    table.cell(1, 0).merge(table.cell(1, 1)).text = "The bell weighs thirteen tonnes."
    d.add_paragraph("")
    d.add_paragraph("Visitors climb 334 steps to the belfry.")
    d.save(str(path))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("office")
    report = write_pdf(root / "report.pdf", REPORT_PAGES, title="Bridge Report")
    write_pdf(root / "partial.pdf", PARTIAL_PAGES)
    write_pdf(root / "scan.pdf", [None, None])
    write_encrypted(root / "locked.pdf", report)
    (root / "broken.pdf").write_bytes(report[: len(report) // 2])
    (root / "fake.docx").write_bytes(b"PK\x03\x04 not really a zip")
    write_docx(root / "memo.docx")
    (root / "notes.txt").write_text("Honeybees collect nectar from flowers.\n", encoding="utf-8")
    return root


def _docs(corpus: Path) -> tuple[dict[str, Document], dict[str, str]]:
    docs, skipped = load_documents(corpus)
    return {d.doc_id: d for d in docs}, dict(skipped)


def test_pdf_pages_are_recorded_in_the_extracted_text(corpus: Path) -> None:
    docs, _ = _docs(corpus)
    report = docs["report.pdf"]
    assert report.title == "Bridge Report"
    assert [p.page for p in report.pages] == [1, 2, 3]
    for span, written in zip(report.pages, REPORT_PAGES):
        # fpdf2 wrapped each page's paragraph over two printed lines and pypdf ends each with a
        # newline; the wraps are joined: the page is its paragraph, one line, as written.
        assert report.text[span.start : span.end] == written
    between = [report.text[a.end : b.start] for a, b in zip(report.pages, report.pages[1:])]
    assert between == [PAGE_SEPARATOR] * 2
    # The page of any character is 1 + the page breaks before it.
    for span in report.pages:
        assert {1 + report.text[:i].count(PAGE_BREAK) for i in range(span.start, span.end)} == {span.page}


def test_pages_without_text_keep_the_numbers_of_the_others(corpus: Path) -> None:
    docs, skipped = _docs(corpus)
    partial = docs["partial.pdf"]
    assert partial.title == "partial"  # no title in the metadata: the file name
    assert [p.page for p in partial.pages] == [2, 4]
    assert partial.text.count(PAGE_BREAK) == 3  # pages 1 and 3 are empty strings between breaks
    assert all(1 + partial.text[: p.start].count(PAGE_BREAK) == p.page for p in partial.pages)
    assert [partial.text[p.start : p.end].split() for p in partial.pages] == [t.split() for t in PARTIAL_PAGES if t]
    passages = split_passages(partial, "sentences", size=20, overlap=0)
    assert [(p.page, p.page_end) for p in passages] == [(2, None), (4, None)]
    assert "partial.pdf" not in skipped


def test_unreadable_files_are_skipped_with_their_reason(corpus: Path) -> None:
    docs, skipped = _docs(corpus)
    assert sorted(docs) == ["memo.docx", "notes.txt", "partial.pdf", "report.pdf"]
    assert sorted(skipped) == ["broken.pdf", "fake.docx", "locked.pdf", "scan.pdf"]
    assert skipped["locked.pdf"].startswith("encrypted PDF (it needs a password)")
    assert skipped["scan.pdf"].startswith("no text layer in any of its 2 page(s)")
    assert "OCR" in skipped["scan.pdf"]
    assert skipped["broken.pdf"].startswith("not a readable PDF (")
    assert skipped["fake.docx"].startswith("not a readable .docx (BadZipFile")


def test_a_pdf_over_the_size_cap_is_skipped_before_parsing(corpus: Path) -> None:
    docs, skipped = load_documents(corpus / "report.pdf", max_file_bytes=100)
    assert docs == [] and skipped[0][0] == "report.pdf" and "size cap" in skipped[0][1]


def test_docx_paragraphs_and_table_cells_in_order(corpus: Path) -> None:
    memo = _docs(corpus)[0]["memo.docx"]
    assert memo.title == "Clock Tower Memo"  # no core-properties title: the first heading
    assert memo.text.split("\n") == [
        "Clock Tower Memo",
        "The clock tower has four faces and a bell cast in 1858.",
        "Height",
        "96 metres",
        "The bell weighs thirteen tonnes.",  # a merged cell once, not once per column
        "Visitors climb 334 steps to the belfry.",
    ]
    assert memo.pages == ()
    assert all(p.page is None and p.page_end is None for p in split_passages(memo))


@pytest.mark.parametrize(("mode", "size", "overlap"), [("tokens", 20, 5), ("sentences", 30, 1), ("sentences", 100, 1)])
def test_passage_spans_and_pages_match_the_extracted_text(corpus: Path, mode: str, size: int, overlap: int) -> None:
    report = _docs(corpus)[0]["report.pdf"]

    def page_at(offset: int) -> int:
        return next(p.page for p in report.pages if p.start <= offset < p.end + len(PAGE_SEPARATOR))

    passages = split_passages(report, mode, size, overlap)
    for p in passages:
        assert report.text[p.start : p.end] == p.text
        first, last = page_at(p.start), page_at(p.end - 1)
        assert (p.page, p.page_end) == (first, last if last != first else None)
    assert any(p.page_end is not None for p in passages), "some passage must run across a page break"


def test_page_keys_in_json_and_labels() -> None:
    plain = Passage("a.txt", "x", start=0, end=1)
    assert "page" not in plain.to_dict() and "page_end" not in plain.to_dict() and plain.page_label == ""
    one = Passage("a.pdf", "x", page=2)
    assert one.to_dict()["page"] == 2 and "page_end" not in one.to_dict() and one.page_label == "p. 2"
    two = Passage("a.pdf", "x", page=2, page_end=3).with_score(0.5)
    assert (two.to_dict()["page"], two.to_dict()["page_end"], two.score) == (2, 3, 0.5)
    assert two.page_label == "pp. 2-3" == page_label(2, 3)


def test_a_passage_cut_for_the_prompt_ends_on_the_right_page(corpus: Path) -> None:
    """The prompt cuts long passages to a token budget; a cut passage must not claim the pages
    it no longer reaches."""
    report = _docs(corpus)[0]["report.pdf"]
    [whole] = split_passages(report, "tokens", size=200, overlap=0)
    assert (whole.page, whole.page_end) == (1, 3)

    class Bytes:  # one token per UTF-8 byte, as tests/fake_llm_server.py counts
        def encode(self, text: str) -> list[int]:
            return list(text.encode())

    for budget, pages in [(40, (1, None)), (report.pages[1].end + 5, (1, 2)), (10_000, (1, 3))]:
        cut = truncate_passage(whole, Bytes(), budget)  # type: ignore[arg-type]
        assert report.text[cut.start : cut.end] == cut.text
        assert (cut.page, cut.page_end) == pages


def test_old_index_records_without_pages_still_load(tmp_path: Path) -> None:
    f = tmp_path / "passages.jsonl"
    old = {"pid": "a#0", "doc_id": "a", "title": "", "start": 0, "end": 1, "text": "x"}
    f.write_text(json.dumps(old) + "\n" + json.dumps({**old, "pid": "b#0", "page": 4, "page_end": 5}) + "\n")
    assert [(p.page, p.page_end) for p in read_passages(f)] == [(None, None), (4, 5)]
    f.write_text(json.dumps({**old, "page": "4"}) + "\n")
    with pytest.raises(ValueError, match="page and page_end must be integers"):
        read_passages(f)


@pytest.fixture(scope="module")
def seeds(corpus: Path) -> dict[str, bytes]:
    return {"pdf": (corpus / "report.pdf").read_bytes(), "docx": (corpus / "memo.docx").read_bytes()}


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(
    kind=st.sampled_from(["pdf", "docx"]),
    cut=st.floats(0, 1),
    flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=8),
)
def test_damaged_files_give_text_or_a_reason_never_an_exception(
    seeds: dict[str, bytes], kind: str, cut: float, flips: list[tuple[float, int]]
) -> None:
    """A real file, truncated and with bytes overwritten: the readers never raise."""
    data = bytearray(seeds[kind][: max(1, int(len(seeds[kind]) * cut))] if cut < 0.98 else seeds[kind])
    for where, value in flips:
        data[min(len(data) - 1, int(len(data) * where))] = value
    got = (read_pdf if kind == "pdf" else read_docx)(bytes(data))
    assert isinstance(got, (Extracted, str))
    if isinstance(got, Extracted):
        assert got.text.strip() and all(got.text[p.start : p.end].strip() for p in got.pages)


# -- end to end: the real `citerag index`, retrieval and `ask` -----------------------------------


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.fixture(scope="module")
def index_run(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("office-idx") / "idx"
    proc = run_cli("-q", "index", str(corpus), "--index", str(out), "--chunk-size", "30")
    assert proc.returncode == 0, proc.stderr
    return out, proc.stdout


def test_index_lists_the_skipped_files_with_reasons(index_run: tuple[Path, str]) -> None:
    out, stdout = index_run
    assert "indexed 4 documents" in stdout
    assert "skipped 4 file(s)/line(s):" in stdout
    for line in ("  locked.pdf: encrypted PDF", "  scan.pdf: no text layer", "  broken.pdf: not a readable PDF"):
        assert line in stdout
    manifest = load_index(out).manifest
    assert sorted(s["path"] for s in manifest["skipped"]) == ["broken.pdf", "fake.docx", "locked.pdf", "scan.pdf"]


def test_retrieved_pdf_passages_carry_their_pages(corpus: Path, index_run: tuple[Path, str]) -> None:
    idx = load_index(index_run[0])
    docs = _docs(corpus)[0]
    for p in idx.passages:  # what the index stored: spans into the extracted text, pages as chunked
        assert docs[p.doc_id].text[p.start : p.end] == p.text
    expected = {p.pid: (p.page, p.page_end) for d in docs.values() for p in split_passages(d, "sentences", 30, 1)}
    assert {p.pid: (p.page, p.page_end) for p in idx.passages} == expected
    bm25, dense = idx.retriever("bm25"), idx.retriever("dense")
    queries = ["When did the Golden Gate Bridge open?", "basalt lava flows", "How many steps to the belfry?"]
    for hits in (bm25.retrieve(queries, 1), dense.retrieve(queries, 1)):
        top = [h[0] for h in hits]
        assert (top[0].doc_id, top[0].page) == ("report.pdf", 2) and "1937" in top[0].text
        # pages 2 and 4 (3 has no text) fit in one 30-word passage: it starts on 2 and ends on 4
        assert (top[1].doc_id, top[1].page, top[1].page_end) == ("partial.pdf", 2, 4)
        assert (top[2].doc_id, top[2].page) == ("memo.docx", None)
    idx.close()


def test_ask_shows_the_page_of_a_cited_pdf_passage(index_run: tuple[Path, str], fake_llm: str) -> None:
    args = ["-q", "ask", "When did the Golden Gate Bridge open?", "--index", str(index_run[0])]
    args += ["--retriever", "bm25", "-k", "2", "--llm-url", fake_llm, "--no-abstain", "--no-quotes"]
    proc = run_cli(*args, "--json")
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    cited = answer["citations"][0]
    assert (cited["n"], cited["doc_id"], cited["page"]) == (1, "report.pdf", 2)
    assert answer["passages"][0]["page"] == 2
    from app.serve.schemas import AskResponse

    assert AskResponse.model_validate(answer).citations[0].page == 2  # the HTTP API's model has it
    text = run_cli(*args)
    assert text.returncode == 0, text.stderr
    assert "[1] Bridge Report (report.pdf, p. 2, characters " in text.stdout


def test_http_api_and_web_page_show_the_page(index_run: tuple[Path, str], browser: Any) -> None:
    """The real server (MiniLM hybrid retrieval over the PDF index, a canned generator): the API's
    citation carries the page, and the web page shows "p. 2" in the references and the passage view."""
    import httpx
    from fakes import FakeGenerator
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from test_serve import serving, settings

    question = "When did the Golden Gate Bridge open?"
    generator = FakeGenerator(["The Golden Gate Bridge opened in 1937 [1]."])
    with serving(settings(index_run[0]), generator=generator) as url:
        api = httpx.post(f"{url}/v1/ask", json={"question": question, "abstain": False}, timeout=120).json()
        assert (api["citations"][0]["doc_id"], api["citations"][0]["page"]) == ("report.pdf", 2)
        cited = api["citations"][0]
        span = {"start": cited["start"], "end": cited["end"], "context": 20}
        window = httpx.get(f"{url}/v1/documents/report.pdf", params=span, timeout=60).json()
        assert window["page"] == 2 and "page_end" not in window  # the source window says its page too
        browser.get(url)
        wait(browser, lambda d: d.find_element(By.ID, "status").text == "ready")
        browser.find_element(By.ID, "question").send_keys(question)
        browser.find_element(By.ID, "ask-button").click()
        wait(browser, final_shown)  # the references come with the final answer, after the streamed sentences
        wait(browser, ec.element_to_be_clickable((By.CSS_SELECTOR, "#answer a.cite"))).click()
        [ref] = browser.find_elements(By.CSS_SELECTOR, "#references li")
        assert "(report.pdf, p. 2, characters " in ref.text
        meta = wait(browser, ec.visibility_of_element_located((By.ID, "passage-meta")))
        assert "report.pdf · p. 2, characters " in meta.text


def test_page_at_counts_the_page_breaks_before_an_offset() -> None:
    from pipeline.types import PAGE_BREAK, Passage

    text = f"end of two\n{PAGE_BREAK}\nall of three\n{PAGE_BREAK}\nfour"
    p = Passage("r.pdf", text, start=100, end=100 + len(text), page=2, page_end=4)
    assert p.page_at(100) == 2 and p.page_at(100 + text.index("all")) == 3 and p.page_at(p.end - 1) == 4
    assert Passage("n.txt", "x", start=0, end=1).page_at(0) is None


def test_layout_line_wraps_are_joined_and_structure_is_kept() -> None:
    page = (
        "Heading\n"
        "The bridge spans the strait between the city and the county to the north of\n"
        "the bay. It opened in 1937 after four years of construction work on the one-mile-\n"
        "wide strait, and its towers are painted in International Orange every few years\n"
        "by crews.\n"
        "A short last line\n"
        "- an item of a list that is long enough to be a full printed line of the page\n"
        "- another item\n"
        "1. a numbered item"
    )
    assert unwrap_lines(page).split("\n") == [
        "Heading",  # short: a heading, not a wrap
        "The bridge spans the strait between the city and the county to the north of the bay. It opened in "
        "1937 after four years of construction work on the one-mile-wide strait, and its towers are painted "
        "in International Orange every few years by crews.",
        "A short last line",  # after a full stop: a sentence ended there
        "- an item of a list that is long enough to be a full printed line of the page",
        "- another item",
        "1. a numbered item",
    ]
    assert unwrap_lines("one line") == "one line" and unwrap_lines("") == ""
    dash = "a spaced dash ends this full printed line of the page, which goes on for a while -\neither way"
    assert unwrap_lines(dash) == dash.replace("\n", " ")
