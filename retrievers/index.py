"""The persistent citerag index: one folder that ``citerag index`` writes and every command reads.

Each version of the index (see :mod:`retrievers.index_store` for the folder layout) holds::

    manifest.json     format_version, versions, embedder, dim, counts, chunking, FAISS kind, ...
    passages.jsonl    one passage per line: pid, doc_id, title, start, end, text, and
                      page / page_end for PDF passages (absent in older indexes: None)
    bm25/             the bm25s index (``BM25.save``) + tokenizer settings
    dense.faiss       the FAISS index (row i = line i of passages.jsonl)

Writing is atomic for readers: a new version is written into a hidden build folder, fsynced,
moved beside the current one and published by replacing the ``CURRENT`` pointer in one
``os.replace``. On any exception, including KeyboardInterrupt, the build folder is removed;
after a SIGKILL, the next run removes it. Readers resolve the pointer once
(:func:`load_index`) and read every file of that one version. A damaged index (a manifest
field of the wrong type, a truncated FAISS file, unreadable BM25 files) is reported as
:class:`IndexIncompatibleError` (exit code 3) with the command that rebuilds it.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.errors import (
    CiteragError,
    ConfigError,
    CorpusError,
    IndexIncompatibleError,
    IndexMissingError,
    IndexWriteError,
    InputError,
)
from pipeline.models import DEFAULT_EMBEDDER
from pipeline.progress import progress_enabled
from pipeline.protocols import Embedder, Retriever
from pipeline.types import Passage
from retrievers import faults
from retrievers import index_store as store
from retrievers.bm25 import BM25Retriever
from retrievers.chunking import chunk_params, split_passages
from retrievers.dense import FAISS_KINDS, DenseRetriever, embedder_dim
from retrievers.hybrid import HybridRetriever
from retrievers.index_store import BM25_DIR, DENSE_FILE, MANIFEST_FILE, PASSAGES_FILE
from retrievers.ingest import DEFAULT_MAX_FILE_MB, load_documents
from retrievers.qdrant_store import DEFAULT_COLLECTION, STORE_FOLDER, STORE_QDRANT, STORES
from retrievers.rerank import CrossEncoderReranker, Reranker, RerankingRetriever

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
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
    max_file_mb: float = DEFAULT_MAX_FILE_MB,
    progress: bool = True,
    store_kind: str = STORE_FOLDER,
    qdrant_url: str | None = None,
    collection: str | None = None,
) -> Manifest:
    """Read ``source_path``, chunk, index (BM25 + FAISS) and publish a new version in ``index_dir``.

    ``embedder`` overrides loading ``embedder_name`` (which is still recorded in the manifest
    as the name to load the embedder by). ``size``/``overlap`` default per ``mode`` (see
    :mod:`retrievers.chunking`). Files over ``max_file_mb`` megabytes are skipped and listed.
    Raises :class:`IndexBusyError` when another run is writing ``index_dir`` and
    :class:`IndexWriteError` when the disk refuses the write; the previous index then stays
    as it was. Returns the manifest written.
    """
    size, overlap = chunk_params(mode, size, overlap)
    if faiss_kind not in FAISS_KINDS:
        raise ConfigError(f"unknown FAISS index kind {faiss_kind!r}: choose one of {', '.join(FAISS_KINDS)}")
    if batch_size <= 0:
        raise ConfigError(f"batch_size must be positive, got {batch_size}")
    if not max_file_mb > 0:
        raise ConfigError(f"the file size cap must be positive, got {max_file_mb} MB")
    if store_kind not in STORES:
        raise ConfigError(f"unknown index store {store_kind!r}: choose one of {', '.join(STORES)}")
    if store_kind != STORE_QDRANT and (qdrant_url or collection):
        raise ConfigError("--qdrant-url and --collection need --store qdrant")
    qdrant = {"url": qdrant_url or None, "collection": collection or DEFAULT_COLLECTION}
    source = Path(source_path).expanduser().resolve()
    target = Path(index_dir).expanduser().resolve()
    _check_target(target)
    created = not target.exists()
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise IndexWriteError(f"cannot create the index folder {target} ({e.strerror or e}): {_write_hint(e)}") from e
    try:
        with store.writer_lock(target):
            try:
                store.clean(target)  # what a killed run left behind
                manifest = _build_locked(
                    source,
                    target,
                    embedder_name,
                    embedder,
                    mode,
                    size,
                    overlap,
                    faiss_kind,
                    batch_size,
                    nprobe,
                    max_file_mb,
                    progress,
                    qdrant if store_kind == STORE_QDRANT else None,
                )
            finally:
                if created and not (target / store.CURRENT_FILE).exists():
                    _remove_own_folder(target)
    except CiteragError:
        raise
    except OSError as e:
        raise IndexWriteError(
            f"could not write the index at {target} ({e.strerror or e}); any previous index is unchanged: "
            f"{_write_hint(e)}"
        ) from e
    log.info("wrote index %s (%d passages, store %s)", target, manifest["counts"]["passages"], manifest["store"])
    return manifest


def _build_locked(
    source: Path,
    target: Path,
    embedder_name: str,
    embedder: Embedder | None,
    mode: str,
    size: int,
    overlap: int,
    faiss_kind: str,
    batch_size: int,
    nprobe: int,
    max_file_mb: float,
    progress: bool,
    qdrant: dict[str, Any] | None = None,
) -> Manifest:
    from tqdm.auto import tqdm

    from pipeline import __version__

    show = progress_enabled(progress)
    docs, skipped = load_documents(source, exclude=[target], max_file_bytes=int(max_file_mb * 1_000_000))
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
            + ": add UTF-8 .txt, .md, .html or .jsonl files, or PDFs with a text layer, or .docx files"
        )
    faults.pause_at("read")
    passages: list[Passage] = []
    for doc in tqdm(docs, desc="Chunking documents", unit="doc", disable=not show):
        passages.extend(split_passages(doc, mode, size, overlap))
    if not passages:
        raise CorpusError(f"the documents in {source} hold no text to index: add documents with text")
    log.info("indexing %d passages from %d documents", len(passages), len(docs))

    if embedder is None:
        from retrievers.dense import SentenceTransformerEmbedder

        embedder = SentenceTransformerEmbedder(embedder_name, batch_size=batch_size)
    embedder = faults.wrap_embedder(embedder)

    build = store.start_build(target)
    try:
        _write_passages(faults.write_path(build / PASSAGES_FILE, "passages"), passages)
        if qdrant is None:
            bm25 = BM25Retriever.build(passages, progress=show)
            bm25.save(build / BM25_DIR)
            dense = DenseRetriever.build(
                passages, embedder, faiss_kind, batch_size=batch_size, nprobe=nprobe, progress=show
            )
            faults.pause_at("write")
            dense.save(faults.write_path(build / DENSE_FILE, "dense"))
            dim, language, stopwords = dense.dim, bm25.language, bm25.stopwords
            store_fields: Manifest = {
                "store": STORE_FOLDER,
                "faiss_kind": dense.kind,
                "faiss": {"requested": faiss_kind, "nprobe": dense.nprobe, "ef_search": dense.ef_search},
            }
        else:
            dim, language, stopwords = _write_qdrant(build, passages, embedder, qdrant, batch_size, show)
            store_fields = {"store": STORE_QDRANT, "qdrant": qdrant}
        manifest: Manifest = {
            "format_version": FORMAT_VERSION,
            "citerag_version": __version__,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "source": str(source),
            "embedder": embedder_name,
            "dim": dim,
            "counts": {"documents": len(docs), "passages": len(passages), "skipped_files": len(skipped)},
            "chunking": {"mode": mode, "size": size, "overlap": overlap},
            **store_fields,
            "bm25": {"language": language, "stopwords": stopwords},
            "skipped": [{"path": path, "reason": reason} for path, reason in skipped],
        }
        _write_synced(build / MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n")
        store.fsync_tree(build)
        store.publish(target, build)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    try:
        store.clean(target)
    except OSError as e:  # the new index is published; what is left goes on the next run
        log.warning("could not remove old index versions in %s (%s); the next run retries", target, e)
    return manifest


def _write_qdrant(
    build: Path,
    passages: list[Passage],
    embedder: Embedder,
    qdrant: dict[str, Any],
    batch_size: int,
    show: bool,
) -> tuple[int, str, str]:
    """Embed ``passages`` and write them into Qdrant; fills ``qdrant['active']`` (the new
    collection) and, in local mode, ``qdrant['path']``. Returns (dim, BM25 language, stopwords)."""
    from retrievers import qdrant_store as qs
    from retrievers.dense import embed_texts, normalize

    vectors = normalize(embed_texts([p.text for p in passages], embedder, batch_size=batch_size, progress=show))
    faults.pause_at("write")
    language, stopwords = "english", "en"  # BM25Retriever.build's defaults: the same terms as bm25s
    local = None if qdrant["url"] else build / qs.LOCAL_DIR
    client = qs.connect(qdrant["url"], local)
    try:
        version = build.name.removeprefix(".build-")
        qdrant["active"] = qs.write_collection(
            client,
            qdrant["collection"],
            version,
            passages,
            vectors,
            language=language,
            stopwords=stopwords,
            payload_index=local is None,
        )
    finally:
        client.close()
    if local is not None:
        qdrant["path"] = qs.LOCAL_DIR
    return int(vectors.shape[1]), language, stopwords


def _write_hint(e: OSError) -> str:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return "free disk space (a rebuild needs room for a second copy), then run `citerag index` again"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "pass an --index folder you can write to"
    return "fix the cause, then run `citerag index` again"


def _remove_own_folder(target: Path) -> None:
    """Remove an index folder this run created, when the run failed before publishing."""
    for entry in target.iterdir():
        if not store.is_own_entry(entry.name):
            return
    shutil.rmtree(target, ignore_errors=True)


def _check_target(target: Path) -> None:
    if not target.exists():
        return
    if not target.is_dir():
        raise InputError(f"index path {target} is a file: pass a folder for the index")
    names = [p.name for p in target.iterdir()]
    if names and not store.is_index_dir(target) and not all(store.is_own_entry(n) for n in names):
        raise InputError(
            f"refusing to overwrite {target}: it is not empty and is not a citerag index "
            f"(no {store.CURRENT_FILE} or {MANIFEST_FILE}); pass a new or empty folder to --index"
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
            if p.page is not None:
                record["page"] = p.page
                if p.page_end is not None:
                    record["page_end"] = p.page_end
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _write_synced(path: Path, text: str) -> None:
    with path.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


#: Manifest fields and their types (checked on load, so a damaged manifest is exit code 3,
#: not a traceback). ``int`` excludes ``bool``.
_MANIFEST_FIELDS: dict[str, type | tuple[type, ...]] = {
    "format_version": int,
    "embedder": str,
    "dim": int,
    "counts": dict,
    "citerag_version": str,
    "created": str,
    "source": str,
    "chunking": dict,
    "faiss_kind": str,
    "faiss": dict,
    "bm25": dict,
    "skipped": list,
    "store": str,
    "qdrant": dict,
}
_REQUIRED_FIELDS = ("format_version", "embedder", "dim", "counts")


def read_manifest(index_dir: str | Path) -> Manifest:
    """The manifest of the index at ``index_dir`` (checked for presence, format and field types)."""
    root = Path(index_dir).expanduser()
    handle = _open(root, index_dir)
    try:
        return _read_manifest_file(handle.data_dir / MANIFEST_FILE, root, index_dir)
    finally:
        handle.close()


def _open(root: Path, index_dir: str | Path) -> store.ReadHandle:
    try:
        handle = store.open_version(root)
    except OSError as e:
        raise IndexIncompatibleError(
            f"the index at {root} cannot be opened ({e.strerror or e}): rebuild it with `{index_command(index_dir)}`"
        ) from e
    if handle is None:
        where = "does not exist" if not root.exists() else f"has no {store.CURRENT_FILE} or {MANIFEST_FILE}"
        raise IndexMissingError(f"no citerag index at {root} ({where}): build one with `{index_command(index_dir)}`")
    return handle


def _read_manifest_file(manifest_file: Path, root: Path, index_dir: str | Path) -> Manifest:
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
        if not isinstance(manifest, dict):
            raise TypeError(f"a JSON object was expected, got {type(manifest).__name__}")
        version = manifest["format_version"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise IndexIncompatibleError(
            f"the index manifest {manifest_file} is unreadable ({e}): rebuild it with `{index_command(index_dir)}`"
        ) from e
    if version != FORMAT_VERSION:
        raise IndexIncompatibleError(
            f"the index at {root} has format version {version!r} but this citerag reads version "
            f"{FORMAT_VERSION}: rebuild it with `{index_command(index_dir, _source(manifest))}`"
        )
    problem = _manifest_problem(manifest)
    if problem:
        raise IndexIncompatibleError(
            f"the index manifest {manifest_file} is damaged ({problem}): rebuild it with "
            f"`{index_command(index_dir, _source(manifest))}`"
        )
    return manifest


def _source(manifest: Manifest) -> str | None:
    source = manifest.get("source")
    return source if isinstance(source, str) else None


def _manifest_problem(manifest: Manifest) -> str | None:
    """What is wrong with the manifest's fields, or None."""
    for key in _REQUIRED_FIELDS:
        if key not in manifest:
            return f"no {key!r} field"
    for key, kind in _MANIFEST_FIELDS.items():
        value = manifest.get(key)
        if key in manifest and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
            return f"{key!r} is {type(value).__name__} {str(value)[:40]!r}, expected {_type_name(kind)}"
    for key, value in manifest["counts"].items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return f"counts[{key!r}] is {value!r}, expected a count"
    if manifest["dim"] <= 0:
        return f"'dim' is {manifest['dim']}, expected a positive dimension"
    return None


def _type_name(kind: type | tuple[type, ...]) -> str:
    names = {int: "an integer", str: "a string", dict: "an object", list: "a list"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def read_passages(path: Path) -> list[Passage]:
    """Passages from a ``passages.jsonl`` file, in order (ValueError on a malformed line)."""
    passages: list[Passage] = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            try:
                passages.append(Passage.from_record(json.loads(line)))
            except ValueError as e:
                raise ValueError(f"line {lineno}: {e}") from e
    return passages


def index_exists(index_dir: str | Path) -> bool:
    """Whether ``index_dir`` holds a citerag index (of either folder layout)."""
    return store.is_index_dir(Path(index_dir).expanduser())


def load_index(index_dir: str | Path) -> CiteragIndex:
    """Open the index at ``index_dir`` (IndexMissingError / IndexIncompatibleError if unusable).

    The ``CURRENT`` pointer is resolved once: every file is read from that version, which no
    ``citerag index`` run removes until :meth:`CiteragIndex.close` (or garbage collection).
    """
    root = Path(index_dir).expanduser()
    handle = _open(root, index_dir)
    try:
        manifest = _read_manifest_file(handle.data_dir / MANIFEST_FILE, root, index_dir)
        index = CiteragIndex(root, manifest, None, handle)
        if index.store != STORE_QDRANT:
            index.passages  # noqa: B018 - read now: a broken index fails when opened, not mid-answer
    except BaseException:
        handle.close()
        raise
    return index


def _read_index_passages(data_dir: Path, root: Path, manifest: Manifest) -> list[Passage]:
    """``passages.jsonl`` of an index version, checked against the manifest's count."""
    rebuild = f"rebuild it with `{index_command(root, _source(manifest))}`"
    try:
        passages = read_passages(data_dir / PASSAGES_FILE)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise IndexIncompatibleError(f"the passages of the index at {root} are unreadable ({e}): {rebuild}") from e
    expected = manifest["counts"].get("passages")
    if expected is not None and expected != len(passages):
        raise IndexIncompatibleError(
            f"the index at {root} lists {expected} passages but {PASSAGES_FILE} holds {len(passages)}: {rebuild}"
        )
    return passages


class CiteragIndex:
    """An opened index: manifest, passages and lazily loaded retrievers.

    A folder index reads its passages when opened. A Qdrant index does not: the collection
    holds every passage in its payloads, so answering, verifying and ``/v1/documents`` query
    it, and ``passages`` reads ``passages.jsonl`` only when something asks for all of them.
    """

    def __init__(
        self, path: Path, manifest: Manifest, passages: list[Passage] | None, handle: store.ReadHandle | None = None
    ) -> None:
        self.path = path
        #: The version folder every file is read from (``path`` itself for an old-layout index).
        self.data_dir = handle.data_dir if handle is not None else path
        self.manifest = manifest
        self._passages = passages
        self._docs: dict[str, list[Passage]] | None = None
        self._handle = handle
        self._bm25: BM25Retriever | None = None
        self._dense: DenseRetriever | None = None
        self._embedder: Embedder | None = None
        self._qdrant: Any = None

    def close(self) -> None:
        """Let a later ``citerag index`` remove this version (retrievers already loaded keep working,
        except Qdrant ones in local mode, whose storage is released here)."""
        if self._qdrant is not None:
            self._qdrant.close()
            self._qdrant = None
        if self._handle is not None:
            self._handle.close()

    @property
    def passages(self) -> list[Passage]:
        """Every passage, in index order (read from ``passages.jsonl`` once)."""
        if self._passages is None:
            self._passages = _read_index_passages(self.data_dir, self.path, self.manifest)
        return self._passages

    @property
    def passage_count(self) -> int:
        """How many passages the index holds (from the manifest, without reading them)."""
        count = self.manifest.get("counts", {}).get("passages")
        return int(count) if isinstance(count, int) else len(self.passages)

    def document_passages(self, doc_id: str) -> list[Passage]:
        """The passages of document ``doc_id`` in document order ([] when the index has none)."""
        if self.store == STORE_QDRANT:
            from retrievers.qdrant_store import document_passages

            return document_passages(self.qdrant_client(), self._qdrant_conf()["collection"], doc_id)
        if self._docs is None:
            docs: dict[str, list[Passage]] = {}
            for p in self.passages:
                docs.setdefault(p.doc_id, []).append(p)
            self._docs = docs
        return list(self._docs.get(doc_id, []))

    @property
    def store(self) -> str:
        """Where the vectors live: ``faiss+bm25s`` (this folder) or ``qdrant``."""
        return str(self.manifest.get("store", STORE_FOLDER))

    def qdrant_client(self) -> Any:
        """The Qdrant client of a ``qdrant`` index (opened once; local mode locks its storage)."""
        if self._qdrant is None:
            from retrievers import qdrant_store as qs

            conf = self._qdrant_conf()
            local = None if conf.get("url") else self.data_dir / str(conf.get("path", qs.LOCAL_DIR))
            self._qdrant = qs.connect(conf.get("url"), local)
        return self._qdrant

    def _qdrant_conf(self) -> dict[str, Any]:
        conf = self.manifest.get("qdrant")
        if not isinstance(conf, dict) or not isinstance(conf.get("collection"), str):
            raise IndexIncompatibleError(f"the index at {self.path} names no Qdrant collection: {self._rebuild_hint}")
        return conf

    def _check_folder_store(self, what: str) -> None:
        if self.store != STORE_FOLDER:
            raise ConfigError(
                f"the index at {self.path} keeps its vectors in {self.store}, not in {what}: use retriever()"
            )

    def __enter__(self) -> CiteragIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CiteragIndex({str(self.path)!r}, passages={self.passage_count}, embedder={self.embedder_name!r})"

    @property
    def embedder_name(self) -> str:
        return str(self.manifest.get("embedder", DEFAULT_EMBEDDER))

    @property
    def _rebuild_hint(self) -> str:
        return f"rebuild it with `{index_command(self.path, _source(self.manifest))}`"

    def bm25(self) -> BM25Retriever:
        """The BM25 retriever (loaded once)."""
        self._check_folder_store("bm25s")
        if self._bm25 is None:
            self._bm25 = BM25Retriever.load(self.data_dir / BM25_DIR, self.passages)
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
        self._check_folder_store("FAISS")
        own = embedder is None or embedder is self._embedder
        if own and self._dense is not None:
            return self._apply_search_params(self._dense, nprobe, ef_search)
        if embedder is None:
            embedder = self.embedder()
        self._check_dim(embedder)
        dense_file = self.data_dir / DENSE_FILE
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
        if self.store == STORE_QDRANT:
            base = self._qdrant_retriever(kind, embedder, rrf_k, depth)
        elif kind == "bm25":
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

    def _check_dim(self, embedder: Embedder) -> None:
        """Refuse an embedder whose vectors are not the index's (FAISS or Qdrant alike)."""
        dim = embedder_dim(embedder)
        if dim != self.manifest.get("dim"):
            raise IndexIncompatibleError(
                f"the embedder gives {dim}-dimensional vectors but the index at {self.path} was "
                f"built with {self.embedder_name!r} ({self.manifest.get('dim')} dimensions): "
                f"pass that embedder, or {self._rebuild_hint} and the embedder you want"
            )

    def _qdrant_retriever(self, kind: str, embedder: Embedder | None, rrf_k: int, depth: int | None) -> Retriever:
        from retrievers.qdrant_store import QdrantCacheRetriever, QdrantRetriever

        if kind != "bm25":
            embedder = embedder if embedder is not None else self.embedder()
            self._check_dim(embedder)
        bm25 = self.manifest.get("bm25") or {}
        cls = QdrantRetriever if kind == "hybrid" else QdrantCacheRetriever
        return cls(
            self.qdrant_client(),
            self._qdrant_conf()["collection"],  # the alias: a re-index switches it whole
            kind,
            embedder if kind != "bm25" else None,
            language=str(bm25.get("language", "english")),
            stopwords=str(bm25.get("stopwords", "en")),
            rrf_k=rrf_k,
            depth=depth,
        )
