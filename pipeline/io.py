"""Reading and writing user files: validated input, atomic output."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pipeline.errors import InputError


def read_user_text(path: str | os.PathLike[str], expected: str) -> str:
    """A user's file as UTF-8 text; bytes that are not UTF-8 are an ``InputError`` naming the
    byte, never a ``UnicodeDecodeError`` traceback."""
    p = Path(path)
    try:
        return p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{p} is not UTF-8 text ({exc.reason} at byte {exc.start}); {expected}") from None


def json_or_none(text: str, where: str) -> tuple[bool, Any]:
    """``(True, value)`` when ``text`` is one JSON document, ``(False, None)`` when it is not JSON
    (the caller may try JSONL). JSON nested past Python's recursion limit, or holding a number
    of more than 4,300 digits, is an ``InputError`` (``json`` raises RecursionError or a plain
    ValueError on them, which no caller expects)."""
    try:
        return True, json.loads(text)
    except json.JSONDecodeError:
        return False, None
    except RecursionError:
        raise InputError(f"{where}: JSON nested too deeply to read") from None
    except ValueError as exc:  # a number of more than 4,300 digits
        raise InputError(f"{where}: JSON holds a value Python cannot read ({exc})") from None


def loads_json(text: str, where: str, expected: str) -> Any:
    """One JSON document or an ``InputError`` saying where and what was expected."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: not valid JSON ({exc.msg}); {expected}") from None
    except RecursionError:
        raise InputError(f"{where}: JSON nested too deeply to read; {expected}") from None
    except ValueError as exc:  # a number of more than 4,300 digits
        raise InputError(f"{where}: JSON holds a value Python cannot read ({exc}); {expected}") from None


def jsonl_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of the non-blank lines of JSONL. Split on newlines only: JSON written
    with ``ensure_ascii=False`` may hold U+2028 or U+0085 inside a string, where
    ``str.splitlines`` would cut the line."""
    for lineno, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            yield lineno, line


def read_records(path: str | os.PathLike[str], field: str) -> list[dict[str, Any]]:
    """JSONL rows that each carry a string ``field``: objects, or bare JSON strings.

    Any malformed line is an error naming the line, raised before work starts.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"input file not found: {p}")
    rows: list[dict[str, Any]] = []
    expected = f'expected {{"{field}": "..."}}'
    for lineno, line in jsonl_lines(read_user_text(p, expected)):
        obj = loads_json(line, f"{p}:{lineno}", expected)
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
