"""The index folder on disk: versions, the ``CURRENT`` pointer, locks and clean-up.

Layout of an index folder ``DIR``::

    DIR/CURRENT                  one line: the name of the version readers open
    DIR/v-<time>-<hex>/          one complete index (manifest.json, passages.jsonl, bm25/,
                                 dense.faiss, .readers.lock)
    DIR/.build-<time>-<hex>/     a version being written (only while ``citerag index`` runs)
    DIR/.trash-<hex>/            an old version being deleted
    DIR/.citerag-index.lock      the writers' lock (only while ``citerag index`` runs)

Why: a reader must see, at every instant, either the whole old index or the whole new one.
A new version is written beside the old one and published by replacing ``CURRENT`` with one
``os.replace``, which is atomic; a SIGKILL at any point leaves ``CURRENT`` naming a complete
version. Readers resolve ``CURRENT`` once and read every file from that version folder, and
hold a shared ``flock`` on its ``.readers.lock`` while they use it; clean-up removes only
versions whose lock it can take exclusively, so an old version lives as long as a reader
(``citerag serve``) holds it. Writers take an exclusive ``flock`` on ``.citerag-index.lock``;
a second writer fails at once, naming the first.

Folders written by older citerag versions hold the index files directly in ``DIR`` (no
``CURRENT``). They still open; the next ``citerag index`` publishes a version beside them and
then removes the old files (they are ignored as soon as ``CURRENT`` exists).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pipeline.errors import IndexBusyError, IndexIncompatibleError
from retrievers import faults

log = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
PASSAGES_FILE = "passages.jsonl"
BM25_DIR = "bm25"
DENSE_FILE = "dense.faiss"
CURRENT_FILE = "CURRENT"
WRITER_LOCK = ".citerag-index.lock"
READERS_LOCK = ".readers.lock"
#: What an old-layout index keeps directly in its folder.
LEGACY_ENTRIES: tuple[str, ...] = (MANIFEST_FILE, PASSAGES_FILE, BM25_DIR, DENSE_FILE, READERS_LOCK)

_VERSION = re.compile(r"v-\d{8}T\d{6}-[0-9a-f]{8}")
_BUILD = re.compile(r"\.build-v-\d{8}T\d{6}-[0-9a-f]{8}")
_TRASH = re.compile(r"\.trash-[0-9a-f]{12}")
_CURRENT_TMP = re.compile(r"\.CURRENT\.tmp-[0-9a-f]{12}")
#: How many times a reader re-resolves ``CURRENT`` when a writer moved it under its feet.
_RESOLVE_TRIES = 50


def is_index_dir(path: Path) -> bool:
    """Whether ``path`` holds a citerag index (either layout)."""
    return (path / CURRENT_FILE).is_file() or (path / MANIFEST_FILE).is_file()


def is_own_entry(name: str) -> bool:
    """Whether ``name`` inside an index folder is one citerag writes (never a user's file)."""
    if name in (CURRENT_FILE, WRITER_LOCK, *LEGACY_ENTRIES):
        return True
    return any(p.fullmatch(name) for p in (_VERSION, _BUILD, _TRASH, _CURRENT_TMP))


# -- readers ------------------------------------------------------------------------------


@dataclass
class ReadHandle:
    """One resolved version of an index, held against clean-up until :meth:`close`."""

    root: Path
    data_dir: Path
    version: str | None  # None: an old-layout folder
    fd: int | None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # releases the shared lock
            self.fd = None

    def __del__(self) -> None:
        self.close()


def open_version(root: Path) -> ReadHandle | None:
    """Resolve ``root/CURRENT`` once and hold that version; None when there is no index.

    Retries when a writer replaced ``CURRENT`` and removed the version between reading the
    pointer and locking it, so a reader never sees a half-removed folder.
    """
    for _ in range(_RESOLVE_TRIES):
        name = _read_pointer(root)
        if name is None:
            if not (root / MANIFEST_FILE).is_file():
                return None
            fd = _lock_shared(root / READERS_LOCK, create=True)
            if (root / CURRENT_FILE).exists():  # converted while we waited for the lock
                _close(fd)
                continue
            return ReadHandle(root, root, None, fd)
        vdir = root / name
        try:
            fd = _lock_shared(vdir / READERS_LOCK, create=False)
        except FileNotFoundError:
            if _read_pointer(root) != name:
                continue  # a writer published a newer version and removed this one
            raise IndexIncompatibleError(
                f"the index at {root} names version {name} in {CURRENT_FILE}, but that folder is "
                "missing or incomplete: rebuild the index with `citerag index`"
            ) from None
        if _same_file(fd, vdir / READERS_LOCK):
            return ReadHandle(root, vdir, name, fd)
        _close(fd)  # the version was moved to the trash while we waited
    raise IndexIncompatibleError(f"the index at {root} kept changing while it was opened: try again")


def _read_pointer(root: Path) -> str | None:
    try:
        raw = (root / CURRENT_FILE).read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise IndexIncompatibleError(
            f"cannot read {root / CURRENT_FILE} ({e.strerror or e}): fix its permissions or rebuild the index "
            "with `citerag index`"
        ) from e
    name = raw.decode("utf-8", errors="replace").strip()
    if not _VERSION.fullmatch(name):
        raise IndexIncompatibleError(
            f"{root / CURRENT_FILE} does not name an index version (it holds {name[:60]!r}): "
            "rebuild the index with `citerag index`"
        )
    return name


def _lock_shared(path: Path, *, create: bool) -> int | None:
    """A shared flock on ``path``; None when an old-layout folder is read-only (no lock)."""
    try:
        fd = os.open(path, os.O_RDONLY)  # flock works on a read-only descriptor
    except FileNotFoundError:
        if not create:
            raise
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return None  # read-only folder: nobody can write there, so nobody can clean it
    fcntl.flock(fd, fcntl.LOCK_SH)  # writers hold it exclusively only for a rename
    return fd


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def _close(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)


# -- writers ------------------------------------------------------------------------------


@contextlib.contextmanager
def writer_lock(root: Path) -> Iterator[None]:
    """Hold the exclusive writers' lock of ``root`` (which must exist); IndexBusyError if taken.

    The lock file is removed before the lock is released; a run that opened the old file
    notices (its inode no longer sits at the path) and tries again.
    """
    path = root / WRITER_LOCK
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 300, 0).decode("utf-8", errors="replace").strip() or "a run that is starting"
            os.close(fd)
            raise IndexBusyError(
                f"another `citerag index` run ({holder}) is writing the index at {root}: wait for it to "
                "finish, or stop it, then run again"
            ) from None
        if _same_file(fd, path):
            break
        os.close(fd)
    try:
        started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, started {started}\n".encode(), 0)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)


def new_version_name() -> str:
    return f"v-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"


def start_build(root: Path) -> Path:
    """A fresh, hidden build folder in ``root`` with its readers' lock file."""
    build = root / f".build-{new_version_name()}"
    build.mkdir()
    (build / READERS_LOCK).touch()
    return build


def publish(root: Path, build: Path) -> str:
    """Move the finished ``build`` into place and point ``CURRENT`` at it (the atomic step)."""
    name = build.name.removeprefix(".build-")
    os.rename(build, root / name)
    fsync_path(root)
    faults.pause_at("publish")
    tmp = root / f".CURRENT.tmp-{uuid.uuid4().hex[:12]}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(name + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, root / CURRENT_FILE)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_path(root)
    faults.pause_at("published")
    return name


def clean(root: Path) -> list[str]:
    """Remove what no reader needs: build and trash folders, pointer temp files, versions
    other than the current one that no reader holds, and old-layout files once ``CURRENT``
    exists. Call it only with :func:`writer_lock` held. Returns the names removed."""
    try:
        current = _read_pointer(root)
        pointer_ok = True
    except IndexIncompatibleError:  # a damaged pointer: keep every version until one is published
        current, pointer_ok = None, False
    removed: list[str] = []
    for entry in sorted(root.iterdir()):
        name = entry.name
        if _BUILD.fullmatch(name) or _TRASH.fullmatch(name):
            shutil.rmtree(entry, ignore_errors=True)
        elif _CURRENT_TMP.fullmatch(name):
            entry.unlink(missing_ok=True)
        elif _VERSION.fullmatch(name) and entry.is_dir() and pointer_ok and name != current:
            if not _trash_unheld(root, [entry], entry / READERS_LOCK):
                continue
        else:
            continue
        removed.append(name)
    if current is not None and any((root / n).exists() for n in LEGACY_ENTRIES if n != READERS_LOCK):
        legacy = [root / n for n in LEGACY_ENTRIES]
        if _trash_unheld(root, legacy, root / READERS_LOCK):
            removed.extend(LEGACY_ENTRIES)
    if removed:
        log.debug("removed from %s: %s", root, ", ".join(removed))
    return removed


def _trash_unheld(root: Path, entries: list[Path], lock_file: Path) -> bool:
    """Move ``entries`` into a trash folder and delete it, unless a reader holds ``lock_file``."""
    try:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.debug("kept %s: a reader holds it", ", ".join(e.name for e in entries))
            return False
        entries = [e for e in entries if e.exists() or e.is_symlink()]
        trash = root / f".trash-{uuid.uuid4().hex[:12]}"
        if len(entries) == 1 and entries[0].is_dir():
            os.rename(entries[0], trash)
        else:
            trash.mkdir()
            for e in entries:
                os.rename(e, trash / e.name)
    finally:
        os.close(fd)
    faults.pause_at("clean")
    shutil.rmtree(trash, ignore_errors=True)
    return True


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on folders
        pass
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            fsync_path(Path(dirpath) / name)
        fsync_path(Path(dirpath))
