"""Test hooks for fault injection into ``citerag index`` (used by tests/test_index_faults.py).

They do nothing unless their environment variable is set, so a user never meets them:

* ``CITERAG_FAULT_PAUSE=<phase>``: at ``phase`` the indexer writes one line
  ``citerag-fault-pause <phase>`` to stderr and sleeps, so that a test can SIGKILL it exactly
  there. Phases, in order: ``read`` (corpus read, nothing written), ``embed`` (first batch
  embedded), ``write`` (passages and BM25 written into the build folder, FAISS not yet),
  ``publish`` (the new version folder is in place, the ``CURRENT`` pointer still names the
  old one), ``published`` (the pointer names the new version, old ones not yet removed),
  ``clean`` (an old version renamed to a trash folder, not yet deleted). With ``--store qdrant``
  also ``qdrant-alias`` (the new collection written, the alias not yet switched; not in
  ``PHASES``, which the folder store's tests walk).
* ``CITERAG_FAULT_ENOSPC=<file>``: the index file ``passages`` or ``dense`` is written to
  ``/dev/full`` instead, whose every write fails with a real ``ENOSPC`` (disk full).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

PAUSE_ENV = "CITERAG_FAULT_PAUSE"
ENOSPC_ENV = "CITERAG_FAULT_ENOSPC"
PHASES: tuple[str, ...] = ("read", "embed", "write", "publish", "published", "clean")


def pause_at(phase: str) -> None:
    """Announce ``phase`` and sleep (until killed) when ``CITERAG_FAULT_PAUSE`` names it."""
    if os.environ.get(PAUSE_ENV) != phase:
        return
    sys.stderr.write(f"citerag-fault-pause {phase}\n")
    sys.stderr.flush()
    time.sleep(3600)


def write_path(path: Path, name: str) -> Path:
    """``path``, or ``/dev/full`` when ``CITERAG_FAULT_ENOSPC`` names this file."""
    return Path("/dev/full") if os.environ.get(ENOSPC_ENV) == name else path


class PausingEmbedder:
    """Wraps an embedder so the ``embed`` pause happens after its first batch."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __call__(self, texts: list[str]) -> Any:
        out = self._inner(texts)
        pause_at("embed")
        return out


def wrap_embedder(embedder: Any) -> Any:
    """``embedder`` itself, or a pausing wrapper when the ``embed`` pause is asked for."""
    return PausingEmbedder(embedder) if os.environ.get(PAUSE_ENV) == "embed" else embedder
