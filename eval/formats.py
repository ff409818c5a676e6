"""Reading the predictions ``citerag eval`` scores, into one :class:`Example` type.

Three formats, detected from the content (or named with ``fmt``):

* ``alce``: ALCE's result JSON, ``{"data": [{"question", "output", "docs": [{"title",
  "text"}], "answer" | "answers" | "qa_pairs"}]}`` (also accepted as JSONL of such items).
  A document with a ``sent`` field (ALCE's QA-extracted documents) is read as that sentence.
* ``ask``: ``citerag ask --json`` (one object) or ``citerag ask --out`` (JSONL): ``answer`` with
  ``[n]`` markers, ``sentences`` and the numbered ``passages`` shown. Rows of failed questions
  (an ``error`` and no answer) are skipped and listed.
* ``revise``: ``citerag revise --json`` / ``--out``: ``original``, ``revised``; the evidence is
  every passage the result mentions (claim citations, edit evidence, the report's evidence).

Gold answers: ``qa_pairs`` (ASQA: ``short_answers`` per disambiguated question), ``answers``
(a list of strings, or a list of alias lists as in QAMPARI), or, in ALCE files without
``qa_pairs``/``answers``, ``answer``; citerag rows may name the list ``gold_answers`` (their
``answer`` is the prediction). Anything malformed is an :class:`InputError` naming the file,
the line or item, and what was expected.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pipeline.errors import InputError
from pipeline.io import json_or_none, jsonl_lines, loads_json, read_user_text

Kind = Literal["alce", "ask", "revise"]
#: Values of ``--format``.
FORMATS = ("auto", "alce", "ask", "revise")
#: How ``ask`` answers are read: ``final`` = the citations citerag shows (markers re-written
#: from each sentence's ``citations``: invalid numbers dropped, post-hoc ones added);
#: ``written`` = the ``answer`` text exactly as the generator wrote it.
ASK_CITATIONS = ("final", "written")

EXPECTED = (
    'expected ALCE\'s result JSON ({"data": [{"question", "output", "docs"}]}) or JSONL from '
    "`citerag ask --out` / `citerag revise --out`"
)


@dataclass(frozen=True)
class Doc:
    """A document shown with the output (ALCE's ``docs`` item, a citerag passage)."""

    title: str
    text: str


@dataclass(frozen=True)
class Example:
    """One prediction to score, whatever file it came from."""

    id: str
    kind: Kind
    question: str
    #: The text evaluated, as read (ALCE's clean-up is applied by the scorer).
    output: str
    #: Documents the citations ``[n]`` point at (``n`` is 1-based); for ``revise``, the evidence.
    docs: tuple[Doc, ...]
    #: The text before revision (``revise`` results), for RARR's preservation.
    original: str | None = None
    #: ASQA: the short answers of each disambiguated question.
    qa_pairs: tuple[tuple[str, ...], ...] = ()
    #: Gold answers, each a tuple of aliases.
    answers: tuple[tuple[str, ...], ...] = ()

    @property
    def cites(self) -> bool:
        """Whether ``[n]`` markers in the output refer to ``docs`` (citation metrics apply)."""
        return self.kind != "revise"


@dataclass(frozen=True)
class Predictions:
    path: str
    kind: Kind
    examples: tuple[Example, ...]
    #: One line per row that was skipped, saying where and why.
    skipped: tuple[str, ...] = ()


def read_predictions(path: str | os.PathLike[str], fmt: str = "auto", *, ask_citations: str = "final") -> Predictions:
    """Every example of ``path``; raises :class:`InputError` before any scoring on bad input."""
    _check_modes(fmt, ask_citations)
    p = Path(path)
    rows, alce_json = _load(p)
    return _parse(rows, str(p), fmt, ask_citations, alce_json)


def predictions_from_rows(
    rows: Sequence[Any], fmt: str = "auto", *, source: str = "predictions", ask_citations: str = "final"
) -> Predictions:
    """The examples of rows already parsed from JSON (the lines of a predictions file, or ALCE
    items); errors name ``source[i]``."""
    _check_modes(fmt, ask_citations)
    return _parse([(f"{source}[{i}]", r) for i, r in enumerate(rows)], source, fmt, ask_citations, False)


def _check_modes(fmt: str, ask_citations: str) -> None:
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    if ask_citations not in ASK_CITATIONS:
        raise InputError(f"unknown ask citation mode {ask_citations!r}: use one of {', '.join(ASK_CITATIONS)}")


def _parse(rows: list[tuple[str, Any]], p: str, fmt: str, ask_citations: str, alce_json: bool) -> Predictions:
    """Examples of ``(where, object)`` rows read from ``p`` (a path or another name)."""
    examples: list[Example] = []
    skipped: list[str] = []
    kind: Kind | None = None if fmt == "auto" else fmt  # type: ignore[assignment]
    if alce_json and kind not in (None, "alce"):
        raise InputError(f'{p} is an ALCE result JSON ({{"data": [...]}}), not --format {kind}')
    for index, (where, obj) in enumerate(rows):
        if not isinstance(obj, dict):
            raise InputError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        found = "alce" if alce_json else _row_kind(obj)
        if found is None:
            if "error" in obj and "answer" not in obj:
                skipped.append(f"{where}: the question failed in `citerag ask` ({obj['error']})")
                continue
            raise InputError(
                f'{where}: cannot tell the format: expected "output" and "docs" (ALCE), "answer" and '
                f'"passages" (citerag ask) or "original" and "revised" (citerag revise); found keys {sorted(obj)[:8]}'
            )
        if kind is None:
            kind = found
        elif found != kind:
            expected = f"--format {kind} was given" if fmt != "auto" else f"the file holds {_NAMES[kind]}s"
            raise InputError(f"{where}: this row is a {_NAMES[found]} but {expected}")
        rid = _row_id(obj, index)
        if kind == "alce":
            examples.append(_alce_example(obj, where, rid))
        elif kind == "ask":
            examples.append(_ask_example(obj, where, rid, ask_citations))
        else:
            examples.append(_revise_example(obj, where, rid))
    if not examples:
        raise InputError(
            f"{p} holds no predictions to evaluate" + (f" ({len(skipped)} failed rows)" if skipped else "")
        )
    assert kind is not None
    return Predictions(p, kind, tuple(examples), tuple(skipped))


_NAMES: dict[str, str] = {"alce": "ALCE item", "ask": "citerag ask answer", "revise": "citerag revise result"}


def _load(p: Path) -> tuple[list[tuple[str, Any]], bool]:
    """(where, object) rows, and whether the file is an ALCE ``{"data": [...]}`` JSON."""
    if p.is_dir():
        raise InputError(
            f"{p} is a folder: pass the predictions file itself (ALCE result JSON or `citerag ask --out` JSONL)"
        )
    if not p.is_file():
        raise InputError(f"predictions file not found: {p}")
    text = read_user_text(p, EXPECTED)
    if not text.strip():
        raise InputError(f"{p} is empty; {EXPECTED}")
    ok, whole = json_or_none(text, str(p))
    if ok:
        if isinstance(whole, dict) and "data" in whole:
            if not isinstance(whole["data"], list):
                raise InputError(f'{p}: "data" must be a list of items; {EXPECTED}')
            return [(f"{p}: data[{i}]", item) for i, item in enumerate(whole["data"])], True
        if isinstance(whole, dict):
            return [(str(p), whole)], False
        if isinstance(whole, list):
            return [(f"{p}: [{i}]", item) for i, item in enumerate(whole)], False
        raise InputError(f"{p} holds a JSON {type(whole).__name__}; {EXPECTED}")
    return [(f"{p}:{n}", loads_json(line, f"{p}:{n}", EXPECTED)) for n, line in jsonl_lines(text)], False


def _row_kind(obj: dict[str, Any]) -> Kind | None:
    if "original" in obj and "revised" in obj:
        return "revise"
    if "passages" in obj and "answer" in obj:
        return "ask"
    if "output" in obj:
        return "alce"
    return None


def _row_id(obj: dict[str, Any], index: int) -> str:
    for key in ("id", "qid", "unique_id"):
        if isinstance(obj.get(key), (str, int)):
            return str(obj[key])
    return str(index)


def _string(obj: dict[str, Any], key: str, where: str, *, required: bool = True) -> str:
    value = obj.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        got = "missing" if key not in obj else f"a {type(value).__name__}"
        raise InputError(f'{where}: expected "{key}" to be a string ({got})')
    return value


def _strings(value: Any, where: str, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"{where}: expected {what} to be a string or a list of strings")
    return tuple(value)


def _answers(value: Any, where: str, key: str) -> tuple[tuple[str, ...], ...]:
    """A string, a list of strings (each an answer) or a list of alias lists."""
    if isinstance(value, str):
        return ((value,),)
    if isinstance(value, list):
        return tuple(_strings(v, where, f'each item of "{key}"') for v in value)
    raise InputError(f'{where}: expected "{key}" to be a string, a list of strings or a list of alias lists')


def _qa_pairs(value: Any, where: str) -> tuple[tuple[str, ...], ...]:
    if not isinstance(value, list):
        raise InputError(f'{where}: expected "qa_pairs" to be a list of {{"short_answers": [...]}}')
    out = []
    for i, pair in enumerate(value):
        if not isinstance(pair, dict) or "short_answers" not in pair:
            raise InputError(f'{where}: qa_pairs[{i}]: expected an object with "short_answers"')
        out.append(_strings(pair["short_answers"], f"{where}: qa_pairs[{i}]", '"short_answers"'))
    return tuple(out)


def _gold(obj: dict[str, Any], where: str, answer_keys: tuple[str, ...]) -> dict[str, Any]:
    gold: dict[str, Any] = {}
    if obj.get("qa_pairs") is not None:
        gold["qa_pairs"] = _qa_pairs(obj["qa_pairs"], where)
        answer_keys = tuple(k for k in answer_keys if k != "answer")  # ASQA's "answer" is a long-form reference
    for key in answer_keys:
        if obj.get(key) is not None:
            gold["answers"] = _answers(obj[key], where, key)
            break
    return gold


def _docs(value: Any, where: str, key: str) -> tuple[Doc, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InputError(f'{where}: expected "{key}" to be a list of {{"title", "text"}}')
    docs = []
    for i, d in enumerate(value):
        at = f"{where}: {key}[{i}]"
        if not isinstance(d, dict):
            raise InputError(f'{at}: expected an object with "title" and "text"')
        if key == "passages" and d.get("n") not in (None, i + 1):
            raise InputError(
                f"{at}: passage number {d.get('n')!r} out of order (expected {i + 1}): "
                "citations [n] index the passages in order"
            )
        text = _string(d, "sent" if "sent" in d else "text", at)
        docs.append(Doc(_string(d, "title", at, required=False), text))
    return tuple(docs)


def _alce_example(obj: dict[str, Any], where: str, rid: str) -> Example:
    return Example(
        id=rid,
        kind="alce",
        question=_string(obj, "question", where, required=False),
        output=_string(obj, "output", where),
        docs=_docs(obj.get("docs"), where, "docs"),
        **_gold(obj, where, ("answers", "answer")),
    )


def _ask_output(obj: dict[str, Any], where: str, mode: str) -> str:
    """The answer text; in ``final`` mode each sentence span re-written with its final
    citations as ``[a][b]`` before its closing punctuation, where ALCE's prompts put them and
    Punkt keeps them in the sentence (the text between sentences, newlines included, is kept)."""
    from pipeline.citations import strip_markers, with_markers

    answer = _string(obj, "answer", where)
    sentences = obj.get("sentences")
    if mode == "written" or sentences is None:
        return answer
    if not isinstance(sentences, list):
        raise InputError(f'{where}: expected "sentences" to be a list')
    spans = []
    for i, s in enumerate(sentences):
        at = f"{where}: sentences[{i}]"
        if not (
            isinstance(s, dict)
            and isinstance(s.get("start"), int)
            and isinstance(s.get("end"), int)
            and isinstance(s.get("text"), str)
            and isinstance(s.get("citations", []), list)
            and all(isinstance(n, int) for n in s.get("citations", []))
        ):
            raise InputError(f'{at}: expected {{"text", "start", "end", "citations": [n, ...]}}')
        if answer[s["start"] : s["end"]] != s["text"]:
            raise InputError(f'{at}: start/end do not locate the sentence in "answer"; use --ask-citations written')
        spans.append((s["start"], s["end"], with_markers(strip_markers(s["text"]), s.get("citations", []))))
    out, pos = [], 0
    for start, end, text in sorted(spans):
        if start < pos:
            raise InputError(f'{where}: sentences overlap in "answer"; use --ask-citations written')
        out += [answer[pos:start], text]
        pos = end
    out.append(answer[pos:])
    return "".join(out)


def _ask_example(obj: dict[str, Any], where: str, rid: str, mode: str) -> Example:
    return Example(
        id=rid,
        kind="ask",
        question=_string(obj, "question", where, required=False),
        output=_ask_output(obj, where, mode),
        docs=_docs(obj.get("passages"), where, "passages"),
        **_gold(obj, where, ("answers", "gold_answers")),
    )


def _evidence(obj: dict[str, Any], where: str) -> tuple[Doc, ...]:
    """Every passage a revise result mentions, first seen first, each once."""
    groups: list[tuple[str, Any]] = []
    for i, claim in enumerate(obj.get("claims") or []):
        if isinstance(claim, dict):
            groups.append((f"claims[{i}].citations", claim.get("citations")))
    for i, edit in enumerate(obj.get("edits") or []):
        if isinstance(edit, dict):
            groups.append((f"edits[{i}].evidence", edit.get("evidence")))
    report = obj.get("report")
    if isinstance(report, dict):
        for i, claim in enumerate(report.get("claims") or []):
            if isinstance(claim, dict):
                groups.append((f"report.claims[{i}].evidence", claim.get("evidence")))
    seen: dict[Doc, None] = {}
    for key, value in groups:
        for d in _docs(value, where, key):
            seen.setdefault(d)
    return tuple(seen)


def _revise_example(obj: dict[str, Any], where: str, rid: str) -> Example:
    return Example(
        id=rid,
        kind="revise",
        question=_string(obj, "question", where, required=False),
        output=_string(obj, "revised", where),
        docs=_evidence(obj, where),
        original=_string(obj, "original", where),
        **_gold(obj, where, ("answers", "gold_answers")),
    )
