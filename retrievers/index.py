"""The persistent citerag index: one folder that ``citerag index`` writes and every command reads.

Folder contents::

    manifest.json     format_version, versions, embedder, dim, counts, chunking, FAISS kind, ...
    passages.jsonl    one passage per line: pid, doc_id, title, start, end, text
    bm25/             the bm25s index (``BM25.save``) + tokenizer settings
    dense.faiss       the FAISS index (row i = line i of passages.jsonl)

Writing is atomic: everything goes into a temporary sibling folder, is fsynced, and is then
swapped into place (old folder renamed aside, new one renamed in, old one deleted). On any
exception, including KeyboardInterrupt, the temporary folder is removed and an existing
index is left untouched.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.errors import (
    ConfigError,
    CorpusError,
    IndexIncompatibleError,
    IndexMissingError,
    InputError,
)
from pipeline.models import DEFAULT_EMBEDDER
from pipeline.progress import progress_enabled
from pipeline.protocols import Embedder, Retriever
from pipeline.types import Passage
from retrievers.bm25 import BM25Retriever
from retrievers.chunking import chunk_params, split_passages
from retrievers.dense import FAISS_KINDS, DenseRetriever, embedder_dim
from retrievers.hybrid import HybridRetriever
from retrievers.ingest import load_documents
from retrievers.rerank import CrossEncoderReranker, Reranker, RerankingRetriever

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
PASSAGES_FILE = "passages.jsonl"
BM25_DIR = "bm25"
DENSE_FILE = "dense.faiss"
RETRIEVER_KINDS: tuple[str, ...] = ("hybrid", "bm25", "dense")

Manifest = dict[str, Any]


def index_command(index_dir: str | Path, source: str | Path | None = None) -> str:
    """The command that (re)builds the index at ``index_dir``."""
    return f"citerag index {source or 'PATH'} --index {index_dir}"


def build_index(
    source_path: str | Path,
    index_dir: str | Path,
    *,
    embedder_name: str = DEFAULT_EMBEDDER,
    embedder: Embedder | None = None,
    mode: str = "sentences",
    size: int | None = None,
    overlap: int | None = None,
    faiss_kind: str = "flat",
    batch_size: int = 64,
    nprobe: int = 8,
    progress: bool = True,
) -> Manifest:
    """Read ``source_path``, chunk, index (BM25 + FAISS) and write ``index_dir`` atomically.

    ``embedder`` overrides loading ``embedder_name`` (which is still recorded in the manifest
    as the name to load the embedder by). ``size``/``overlap`` default per ``mode`` (see
    :mod:`retrievers.chunking`). Returns the manifest written.
    """
    from tqdm.auto import tqdm

    from pipeline import __version__

    size, overlap = chunk_params(mode, size, overlap)
    if faiss_kind not in FAISS_KINDS:
        raise ConfigError(f"unknown FAISS index kind {faiss_kind!r}: choose one of {', '.join(FAISS_KINDS)}")
    if batch_size <= 0:
        raise ConfigError(f"batch_size must be positive, got {batch_size}")
    source = Path(source_path).expanduser().resolve()
    target = Path(index_dir).expanduser().resolve()
    _check_target(target)
    show = progress_enabled(progress)

    docs, skipped = load_documents(source, exclude=[target])
    if skipped:
        log.warning(
            "skipped %d file(s)/line(s) of the corpus: %s",
            len(skipped),
            "; ".join(f"{path} ({reason})" for path, reason in skipped),
        )
    if not docs:
        raise CorpusError(
            f"no readable documents in {source}"
            + (f" ({len(skipped)} skipped)" if skipped else "")
            + ": add UTF-8 .txt, .md, .html or .jsonl files"
        )
    passages: list[Passage] = []
    for doc in tqdm(docs, desc="Chunking documents", unit="doc", disable=not show):
        passages.extend(split_passages(doc, mode, size, overlap))
    if not passages:
        raise CorpusError(f"the documents in {source} hold no text to index: add documents with text")
    log.info("indexing %d passages from %d documents", len(passages), len(docs))

    if embedder is None:
        from retrievers.dense import SentenceTransformerEmbedder

        embedder = SentenceTransformerEmbedder(embedder_name, batch_size=batch_size)

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        _write_passages(tmp / PASSAGES_FILE, passages)
        bm25 = BM25Retriever.build(passages, progress=show)
        bm25.save(tmp / BM25_DIR)
        dense = DenseRetriever.build(
            passages, embedder, faiss_kind, batch_size=batch_size, nprobe=nprobe, progress=show
        )
        dense.save(tmp / DENSE_FILE)
        manifest: Manifest = {
            "format_version": FORMAT_VERSION,
            "citerag_version": __version__,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "source": str(source),
            "embedder": embedder_name,
            "dim": dense.dim,
            "counts": {"documents": len(docs), "passages": len(passages), "skipped_files": len(skipped)},
            "chunking": {"mode": mode, "size": size, "overlap": overlap},
            "faiss_kind": dense.kind,
            "faiss": {"requested": faiss_kind, "nprobe": dense.nprobe, "ef_search": dense.ef_search},
            "bm25": {"language": bm25.language, "stopwords": bm25.stopwords},
            "skipped": [{"path": path, "reason": reason} for path, reason in skipped],
        }
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        _fsync_tree(tmp)
        _swap_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("wrote index %s (%d passages, FAISS %s)", target, len(passages), manifest["faiss_kind"])
    return manifest


def _check_target(target: Path) -> None:
    if not target.exists():
        return
    if not target.is_dir():
        raise InputError(f"index path {target} is a file: pass a folder for the index")
    if any(target.iterdir()) and not (target / MANIFEST_FILE).is_file():
        raise InputError(
            f"refusing to overwrite {target}: it is not empty and is not a citerag index "
            f"(no {MANIFEST_FILE}); pass a new or empty folder to --index"
        )


def _write_passages(path: Path, passages: Sequence[Passage]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for p in passages:
            record = {
                "pid": p.pid,
                "doc_id": p.doc_id,
                "title": p.title,
                "start": p.start,
                "end": p.end,
                "text": p.text,
            }
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on folders
        pass
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            _fsync_path(Path(dirpath) / name)
        _fsync_path(Path(dirpath))


def _swap_into_place(tmp: Path, target: Path) -> None:
    if target.exists() and not any(target.iterdir()):
        target.rmdir()
    if not target.exists():
        os.rename(tmp, target)
    else:
        old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(target, old)
        try:
            os.rename(tmp, target)
        except BaseException:
            os.rename(old, target)
            raise
        shutil.rmtree(old, ignore_errors=True)
    _fsync_path(target.parent)


def read_manifest(index_dir: str | Path) -> Manifest:
    """The manifest of the index at ``index_dir`` (checked for presence and format version)."""
    path = Path(index_dir).expanduser()
    manifest_file = path / MANIFEST_FILE
    if not manifest_file.is_file():
        where = "does not exist" if not path.exists() else f"has no {MANIFEST_FILE}"
        raise IndexMissingError(f"no citerag index at {path} ({where}): build one with `{index_command(index_dir)}`")
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
        version = manifest["format_version"]
    except (ValueError, KeyError, TypeError) as e:
        raise IndexIncompatibleError(
            f"the index manifest {manifest_file} is unreadable ({e}): rebuild it with `{index_command(index_dir)}`"
        ) from e
    if version != FORMAT_VERSION:
        raise IndexIncompatibleError(
            f"the index at {path} has format version {version!r} but this citerag reads version "
            f"{FORMAT_VERSION}: rebuild it with `{index_command(index_dir, manifest.get('source'))}`"
        )
    return manifest


def read_passages(path: Path) -> list[Passage]:
    """Passages from a ``passages.jsonl`` file, in order."""
    passages: list[Passage] = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            passages.append(
                Passage(
                    doc_id=r["doc_id"],
                    text=r["text"],
                    title=r.get("title", ""),
                    start=int(r["start"]),
                    end=int(r["end"]),
                    pid=r.get("pid", ""),
                )
            )
    return passages


def load_index(index_dir: str | Path) -> CiteragIndex:
    """Open the index at ``index_dir`` (IndexMissingError / IndexIncompatibleError if unusable)."""
    path = Path(index_dir).expanduser()
    manifest = read_manifest(path)
    rebuild = f"rebuild it with `{index_command(index_dir, manifest.get('source'))}`"
    try:
        passages = read_passages(path / PASSAGES_FILE)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise IndexIncompatibleError(f"the passages of the index at {path} are unreadable ({e}): {rebuild}") from e
    expected = manifest.get("counts", {}).get("passages")
    if expected is not None and expected != len(passages):
        raise IndexIncompatibleError(
            f"the index at {path} lists {expected} passages but {PASSAGES_FILE} holds {len(passages)}: {rebuild}"
        )
    return CiteragIndex(path, manifest, passages)


class CiteragIndex:
    """An opened index: manifest, passages and lazily loaded retrievers."""

    def __init__(self, path: Path, manifest: Manifest, passages: list[Passage]) -> None:
        self.path = path
        self.manifest = manifest
        self.passages = passages
        self._bm25: BM25Retriever | None = None
        self._dense: DenseRetriever | None = None
        self._embedder: Embedder | None = None

    def __repr__(self) -> str:
        return f"CiteragIndex({str(self.path)!r}, passages={len(self.passages)}, embedder={self.embedder_name!r})"

    @property
    def embedder_name(self) -> str:
        return str(self.manifest.get("embedder", DEFAULT_EMBEDDER))

    @property
    def _rebuild_hint(self) -> str:
        return f"rebuild it with `{index_command(self.path, self.manifest.get('source'))}`"

    def bm25(self) -> BM25Retriever:
        """The BM25 retriever (loaded once)."""
        if self._bm25 is None:
            self._bm25 = BM25Retriever.load(self.path / BM25_DIR, self.passages)
        return self._bm25

    def embedder(self) -> Embedder:
        """The sentence-transformers embedder named in the manifest (loaded once)."""
        if self._embedder is None:
            from retrievers.dense import SentenceTransformerEmbedder

            self._embedder = SentenceTransformerEmbedder(self.embedder_name)
        return self._embedder

    def dense(
        self, embedder: Embedder | None = None, *, nprobe: int | None = None, ef_search: int | None = None
    ) -> DenseRetriever:
        """The dense retriever; uses :meth:`embedder` when ``embedder`` is None."""
        own = embedder is None or embedder is self._embedder
        if own and self._dense is not None:
            return self._apply_search_params(self._dense, nprobe, ef_search)
        if embedder is None:
            embedder = self.embedder()
        dim = embedder_dim(embedder)
        if dim != self.manifest.get("dim"):
            raise IndexIncompatibleError(
                f"the embedder gives {dim}-dimensional vectors but the index at {self.path} was "
                f"built with {self.embedder_name!r} ({self.manifest.get('dim')} dimensions): "
                f"pass that embedder, or {self._rebuild_hint} and the embedder you want"
            )
        dense_file = self.path / DENSE_FILE
        if not dense_file.is_file():
            raise IndexIncompatibleError(f"the index at {self.path} has no {DENSE_FILE}: {self._rebuild_hint}")
        retriever = DenseRetriever.load(dense_file, self.passages, embedder)
        if own:
            self._dense = retriever
        return self._apply_search_params(retriever, nprobe, ef_search)

    @staticmethod
    def _apply_search_params(r: DenseRetriever, nprobe: int | None, ef_search: int | None) -> DenseRetriever:
        if nprobe is not None:
            r.nprobe = nprobe
        if ef_search is not None:
            r.ef_search = ef_search
        return r

    def retriever(
        self,
        kind: str = "hybrid",
        reranker: Reranker | str | None = None,
        *,
        embedder: Embedder | None = None,
        rerank_depth: int = 20,
        rrf_k: int = 60,
        depth: int | None = None,
    ) -> Retriever:
        """A ready retriever of ``kind`` (hybrid, bm25 or dense), optionally re-ranked.

        ``reranker`` is a ``(query, texts) -> scores`` callable or a cross-encoder path.
        """
        if kind not in RETRIEVER_KINDS:
            raise ConfigError(f"unknown retriever kind {kind!r}: choose one of {', '.join(RETRIEVER_KINDS)}")
        base: Retriever
        if kind == "bm25":
            base = self.bm25()
        elif kind == "dense":
            base = self.dense(embedder)
        else:
            # Passages with no query term get no BM25 vote (they would get arbitrary RRF credit).
            bm25 = self.bm25().view(matched_only=True)
            base = HybridRetriever([bm25, self.dense(embedder)], rrf_k=rrf_k, depth=depth)
        if reranker is None:
            return base
        scorer: Callable[[str, list[str]], Sequence[float]]
        scorer = CrossEncoderReranker(reranker) if isinstance(reranker, str) else reranker
        return RerankingRetriever(base, scorer, depth=rerank_depth)
