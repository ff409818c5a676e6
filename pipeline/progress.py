"""Progress bars that follow the logger level (house style, as in sentence-transformers)."""

from __future__ import annotations

import logging
import sys
from typing import Any


def progress_enabled(requested: bool = True) -> bool:
    """Show bars when asked for and the citerag logger is at INFO or below, or at WARNING on a terminal."""
    if not requested:
        return False
    level = logging.getLogger("citerag").getEffectiveLevel()
    return level <= logging.INFO or (level <= logging.WARNING and sys.stderr.isatty())


def progress_bar(total: int | None = None, desc: str = "", enabled: bool = True, **kw: Any) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not progress_enabled(enabled), leave=False, **kw)
