"""Claim splitting: one claim per sentence, citation markers kept with their sentence."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pipeline.citations import parse_markers, sentence_spans, strip_markers


def checkable(text: str) -> bool:
    """Whether ``text`` (markers stripped) has a word to check: not a stray "[2]" or "--"."""
    return bool(re.search(r"\w", text))


@dataclass(frozen=True)
class Claim:
    """A sentence of a text: ``source[start:end] == sentence``; ``text`` is what is checked."""

    #: The sentence exactly as written (markers included).
    sentence: str
    start: int
    end: int
    #: The sentence without citation markers: what the judge and the editor see.
    text: str
    #: Citation numbers written in the sentence, in order of appearance.
    markers: tuple[int, ...] = ()

    @property
    def checkable(self) -> bool:
        """False for fragments with no word in them (a stray "[2]" or "--")."""
        return checkable(self.text)

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.sentence, "start": self.start, "end": self.end, "markers": list(self.markers)}


class ClaimSplitter(Protocol):
    def split(self, text: str) -> list[Claim]: ...


class SentenceClaimSplitter:
    """Claims are the sentences of :func:`pipeline.citations.sentence_spans`."""

    def split(self, text: str) -> list[Claim]:
        return split_claims(text)


def split_claims(text: str) -> list[Claim]:
    out = []
    for s, e in sentence_spans(text):
        seg = text[s:e]
        out.append(Claim(seg, s, e, strip_markers(seg), tuple(parse_markers(seg))))
    return out


def join_claims(source: str, claims: Sequence[Claim], replacements: dict[int, str | None]) -> str:
    """``source`` with claim ``i``'s span replaced by ``replacements[i]`` (None: removed).

    Text between claims is kept; a removed claim takes the whitespace that follows it (or,
    when it ends the text, the whitespace before it) with it.
    """
    out: list[str] = []
    pos = 0
    for i, c in enumerate(claims):
        out.append(source[pos : c.start])
        pos = c.end
        if i not in replacements:
            out.append(c.sentence)
            continue
        new = replacements[i]
        if new is None:
            while pos < len(source) and source[pos] in " \t":
                pos += 1
        else:
            out.append(new)
    out.append(source[pos:])
    text = "".join(out)
    return text.rstrip() if source == source.rstrip() else text
