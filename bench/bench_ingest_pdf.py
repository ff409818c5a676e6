"""PDF ingestion speed: `citerag index`'s stages on a folder of PDFs against the same text as
.txt files, side by side in one run.

The corpus: ``--pdfs`` PDFs of ``--pages`` pages, each page ``--per-page`` NQ-open gold
passages (about 100 words each; reused in order once the 2,600 run out), written with fpdf2;
and one .txt file per PDF holding the same page texts separated by blank lines. The text is
first folded to Latin-1, what fpdf2's core fonts can draw, so both folders hold the same
characters. Writing the files is not timed.

Stages, each timed on both folders in alternating order (pdf, txt, txt, pdf, ...) for
``--rounds`` rounds, best round reported:
  read   ``load_documents`` (pypdf extraction for the PDFs, UTF-8 decoding for the text)
  chunk  read + ``split_passages`` (sentences, 100 words: the index's defaults)
  bm25   read + chunk + ``BM25Retriever.build`` + save (the whole BM25 index; the dense half
         of `citerag index` embeds the same passages for either format, so it is left out)

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python bench/bench_ingest_pdf.py [--pdfs 100] [--pages 10]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_ask import DEFAULT_DATA, load  # noqa: E402

from retrievers.bm25 import BM25Retriever  # noqa: E402
from retrievers.chunking import split_passages  # noqa: E402
from retrievers.ingest import load_documents  # noqa: E402
from retrievers.ingest_office import PAGE_SEPARATOR  # noqa: E402


def write_corpus(root: Path, texts: list[str], n_pdfs: int, n_pages: int, per_page: int) -> tuple[Path, Path]:
    """``root/pdf`` and ``root/txt``: the same pages as PDFs and as text files."""
    from fpdf import FPDF

    pdf_dir, txt_dir = root / "pdf", root / "txt"
    pdf_dir.mkdir()
    txt_dir.mkdir()
    it = iter(texts)
    for i in range(n_pdfs):
        pages = [" ".join(next(it) for _ in range(per_page)) for _ in range(n_pages)]
        pdf = FPDF()
        pdf.set_title(f"Document {i}")
        pdf.set_font("Helvetica", size=10)
        for page in pages:
            pdf.add_page()
            pdf.multi_cell(0, 5, page)
            # multi_cell breaks onto a new page when the text overflows: keep one source page per PDF page
            assert pdf.page == len(pdf.pages), "a page overflowed: lower --per-page"
        pdf.output(str(pdf_dir / f"doc{i:04d}.pdf"))
        (txt_dir / f"doc{i:04d}.txt").write_text(PAGE_SEPARATOR.join(pages) + "\n", encoding="utf-8")
    return pdf_dir, txt_dir


def stages(folder: Path, out: Path) -> dict[str, Callable[[], int]]:
    """Each stage as a function returning a count (documents read, passages, indexed passages)."""

    def read() -> int:
        return len(load_documents(folder)[0])

    def chunk() -> int:
        return sum(len(split_passages(d)) for d in load_documents(folder)[0])

    def bm25() -> int:
        passages = [p for d in load_documents(folder)[0] for p in split_passages(d)]
        shutil.rmtree(out, ignore_errors=True)
        BM25Retriever.build(passages, progress=False).save(out)
        return len(passages)

    return {"read": read, "chunk": chunk, "bm25": bm25}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pdfs", type=int, default=100)
    ap.add_argument("--pages", type=int, default=10)
    ap.add_argument("--per-page", type=int, default=3, help="NQ passages per page (about 100 words each)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = ap.parse_args()
    logging.getLogger("pypdf").setLevel(logging.ERROR)

    corpus = load(args.data, 0)[0]
    need = args.pdfs * args.pages * args.per_page
    # The NQ pool has 2,600 passages: a bigger corpus starts over from the first one.
    texts = [" ".join(corpus[i % len(corpus)]["text"].split()) for i in range(need)]
    texts = [t.encode("latin-1", "replace").decode("latin-1") for t in texts]
    n_pages = args.pdfs * args.pages
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        pdf_dir, txt_dir = write_corpus(root, texts, args.pdfs, args.pages, args.per_page)
        mb = {k: sum(f.stat().st_size for f in d.iterdir()) / 1e6 for k, d in (("pdf", pdf_dir), ("txt", txt_dir))}
        print(f"wrote {args.pdfs} PDFs x {args.pages} pages ({mb['pdf']:.1f} MB) and the same text as .txt "
              f"({mb['txt']:.1f} MB) in {time.perf_counter() - t0:.1f} s")  # fmt: skip

        # Extraction fidelity: the words pypdf gives back against the words written.
        docs = {d.doc_id.removesuffix(".pdf"): d for d in load_documents(pdf_dir)[0]}
        plain = {d.doc_id.removesuffix(".txt"): d for d in load_documents(txt_dir)[0]}
        same = sum(docs[k].text.split() == plain[k].text.split() for k in plain)
        pages = sum(len(d.pages) for d in docs.values())
        print(f"PDF text: {same}/{len(plain)} documents word-for-word equal to the .txt; {pages} pages with text")
        for k in sorted(plain):
            got, want = docs[k].text.split(), plain[k].text.split()
            if got != want:
                i = next((j for j, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
                print(f"  {k}: first difference at word {i}: pdf {got[i : i + 3]} vs txt {want[i : i + 3]}")

        # Warm-up: the first BM25 build pays for importing bm25s and its compiled helpers.
        BM25Retriever.build(split_passages(next(iter(plain.values()))), progress=False)
        runs = {"pdf": stages(pdf_dir, root / "bm25-pdf"), "txt": stages(txt_dir, root / "bm25-txt")}
        best: dict[tuple[str, str], float] = {}
        counts: dict[tuple[str, str], int] = {}
        for r in range(args.rounds):
            order = ("pdf", "txt") if r % 2 == 0 else ("txt", "pdf")
            for stage in ("read", "chunk", "bm25"):
                for kind in order:
                    t = time.perf_counter()
                    counts[kind, stage] = runs[kind][stage]()
                    dt = time.perf_counter() - t
                    best[kind, stage] = min(dt, best.get((kind, stage), dt))

    print(f"\n{'stage':<7} {'pdf s':>8} {'txt s':>8} {'pdf pages/s':>12} {'txt pages/s':>12} {'pdf/txt time':>13}")
    for stage in ("read", "chunk", "bm25"):
        p, t = best["pdf", stage], best["txt", stage]
        print(f"{stage:<7} {p:8.2f} {t:8.3f} {n_pages / p:12.1f} {n_pages / t:12.1f} {p / t:12.1f}x")
    print(f"passages: pdf {counts['pdf', 'bm25']}, txt {counts['txt', 'bm25']}")
    print(
        "ratios (PDF time / text time, same pages, this run): "
        + ", ".join(f"{s} {best['pdf', s] / best['txt', s]:.1f}x" for s in ("read", "chunk", "bm25"))
    )


if __name__ == "__main__":
    main()
