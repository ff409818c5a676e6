"""Reading and writing user files: validated input, atomic output."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pipeline.errors import InputError


def read_records(path: str | os.PathLike[str], field: str) -> list[dict[str, Any]]:
    """JSONL rows that each carry a string ``field``: objects, or bare JSON strings.

    Any malformed line is an error naming the line, raised before work starts.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"input file not found: {p}")
    rows: list[dict[str, Any]] = []
    with p.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f'{p}:{lineno}: not valid JSON ({exc.msg}); expected {{"{field}": "..."}}') from None
            if isinstance(obj, str):
                obj = {field: obj}
            if not isinstance(obj, dict) or not isinstance(obj.get(field), str):
                raise InputError(f'{p}:{lineno}: expected an object with a string "{field}" field')
            rows.append(obj)
    if not rows:
        raise InputError(f"{p} holds no {field}s")
    return rows


def read_questions(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Questions from JSONL: ``{"question": ..., "id": ...}`` objects or bare JSON strings."""
    return read_records(path, "question")


def write_jsonl_atomic(path: str | os.PathLike[str], rows: Iterable[dict[str, Any]]) -> None:
    """Write JSONL to a temporary file beside ``path`` and rename it into place."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
