"""The one exception hierarchy of citerag.

Every error carries a message that says what to do. The CLI turns them into one line on
stderr and an exit code (``exit_code``); the HTTP server into a status (``http_status``).
"""

from __future__ import annotations


class CiteragError(Exception):
    """Root of every error citerag raises on purpose."""

    exit_code: int = 1
    http_status: int = 500


class InputError(CiteragError, ValueError):
    """The user's input (question, file, option) is unusable as given."""

    exit_code = 2
    http_status = 422


class CorpusError(InputError):
    """A corpus path is missing, empty or holds no readable document."""


class IndexMissingError(CiteragError, FileNotFoundError):
    """No citerag index at the given path."""

    exit_code = 3
    http_status = 503


class IndexIncompatibleError(CiteragError):
    """An index exists but was written by another format version or embedder."""

    exit_code = 3
    http_status = 503


class IndexWriteError(CiteragError):
    """The index could not be written (disk full, no permission); the previous index is unchanged."""

    exit_code = 6
    http_status = 503


class IndexBusyError(IndexWriteError):
    """Another ``citerag index`` run is writing the same index folder."""


class ModelNotFoundError(CiteragError):
    """Model weights could not be found locally (there is no model hub here)."""

    exit_code = 4
    http_status = 503


class GeneratorUnavailableError(CiteragError):
    """The LLM backend cannot be reached or failed to start."""

    exit_code = 5
    http_status = 503


class ClusterUnavailableError(CiteragError):
    """The Ray cluster named by ``--ray`` cannot be reached or joined."""

    exit_code = 5
    http_status = 503


class ContextBudgetError(InputError):
    """The prompt cannot fit the generator's context window."""


class ConfigError(InputError):
    """An option or configuration value is invalid."""
