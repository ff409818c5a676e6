"""Citations by construction: decoding constrained so every sentence ends with a citation.

In the ``constrained`` citation mode the generator decodes under a regular expression
(vLLM's structured outputs, compiled by xgrammar), so the model itself must choose, for every
sentence, which of the ``k`` documents it shows supports it. The answer is 1..N sentences
separated by one space; each sentence is 1..W words of 1..L characters and ends with 1..M
citation groups and a full stop: ``Paris is the capital [1].`` or ``It opened in 1937 [2][3].``.
Sentence text never contains ``[``, ``]``, a newline, the string ``Document`` (the prompt's
document header), or a sentence-ending ``.``/``!``/``?`` (one may appear inside
a word, as in ``3.5`` or ``U.S``), so :func:`pipeline.citations.sentence_spans` splits a
constrained answer into exactly its N sentences, each carrying only numbers within 1..k.

A ``max_tokens`` cut cannot leave a sentence without its citation: the main decode gets
``max_tokens`` minus a reserve (the longest citation tail, one token per character), then

* text after the last complete sentence is dropped (the regex guarantees the rest matches);
* when no sentence completed at all, the unfinished sentence is cut back to its last whole
  word and one more constrained decode, from the prompt plus that text, writes only the
  citation tail (`` [n].``) within the reserve: the model still chooses the source.

So the answer never exceeds ``max_tokens`` and every sentence carries a citation it chose.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pipeline.errors import ConfigError, GeneratorUnavailableError
from pipeline.types import Generation, GenerationParams

log = logging.getLogger(__name__)

CitationMode = Literal["post-hoc", "constrained"]
#: Valid citation modes, in the order the CLI lists them.
CITATION_MODES: tuple[str, ...] = ("post-hoc", "constrained")

#: No answer text may contain this (the prompt's ``Document [n]`` header). Its first letter
#: must not occur again in it (true here), which keeps :func:`word_regex` simple.
FORBIDDEN_WORD_START = "Document"

# Characters that never appear inside a word: whitespace and control characters (everything
# Python's ``\s`` matches, so the sentence splitter and the regex agree), brackets, and the
# sentence enders, which are allowed only inside a word, followed by a plain character.
_SPACE = r"\x00-\x20\x7f-\xa0\u1680\u2000-\u200f\u2028-\u202f\u205f-\u2064\u3000\ufeff"
_ENDERS = r".!?"
_CLOSERS = "\"'\u201d\u2019)"


def check_citation_mode(mode: str) -> str:
    """``mode`` when it is one of :data:`CITATION_MODES`, else a :class:`ConfigError` listing them."""
    if mode not in CITATION_MODES:
        raise ConfigError(f"unknown citation mode {mode!r}; valid modes: {', '.join(CITATION_MODES)}")
    return mode


@dataclass(frozen=True)
class ConstraintSpec:
    """Shape of a constrained answer (bounds of the regular expression)."""

    #: Sentences per answer (N).
    max_sentences: int = 3
    #: Words per sentence (W).
    max_words: int = 40
    #: Characters per word, about (L): see :func:`word_regex`.
    max_word_chars: int = 30
    #: Citation groups ``[n]`` per sentence (M). ALCE scores at most 3.
    max_citations: int = 3

    def __post_init__(self) -> None:
        for name in ("max_sentences", "max_words", "max_citations"):
            if getattr(self, name) < 1:
                raise ConfigError(f"ConstraintSpec.{name} must be at least 1 (got {getattr(self, name)})")
        if self.max_word_chars < len(FORBIDDEN_WORD_START):
            raise ConfigError(
                f"ConstraintSpec.max_word_chars must be at least {len(FORBIDDEN_WORD_START)} (got {self.max_word_chars})"
            )


def _char_class(extra: str = "") -> str:
    """A word character other than ``extra`` (and never an ender: those come as units)."""
    return f"[^{_SPACE}\\[\\]{re.escape(_ENDERS)}{re.escape(extra)}]"


def _unit(exclude_first: str = "") -> str:
    """One word unit: a plain character, or an ender followed by a plain, non-closing one.

    ``exclude_first`` removes characters from the unit's first position (enders never
    equal a letter, so the ender form is always allowed).
    """
    # Not the first letter of the forbidden string either: ".D" must not start "Document".
    after_ender = f"[^{_SPACE}\\[\\]{re.escape(_ENDERS)}{re.escape(_CLOSERS)}{FORBIDDEN_WORD_START[0]}]"
    return f"(?:{_char_class(exclude_first)}|[{re.escape(_ENDERS)}]{after_ender})"


def word_regex(max_units: int) -> str:
    """One word: up to ``max_units`` items (about as many characters) that never contain ``Document``.

    A *chunk* is a run of ``D`` plus a proper prefix of ``ocument`` (a partial match). A word
    is a run of items, each a unit that is not ``D``, or chunks followed by a unit that breaks
    the last one's match (neither ``D`` nor its next letter); it may end in chunks. Chunks
    are unbounded, so the bound is on items, not exactly on characters.
    """
    head, rest = FORBIDDEN_WORD_START[0], FORBIDDEN_WORD_START[1:]
    prefixes = "|".join(re.escape(rest[:i]) for i in range(1, len(rest)))
    chunk = f"{re.escape(head)}+(?:{prefixes})?"
    breaking = [f"(?:{chunk})*{re.escape(head)}+{re.escape(rest[:i])}{_unit(head + rest[i])}" for i in range(len(rest))]
    item = "(?:" + "|".join([_unit(head), *breaking]) + ")"
    return f"(?:{item}{{1,{max_units}}}(?:{chunk})*|(?:{chunk})+)"


def number_regex(k: int) -> str:
    """The citation numbers 1..k (no leading zeros)."""
    if k < 1:
        raise ConfigError(f"constrained citations need at least one shown passage (k={k})")
    if k <= 9:
        return "[1-9]" if k == 9 else ("1" if k == 1 else f"[1-{k}]")
    return "(?:" + "|".join(str(n) for n in range(k, 0, -1)) + ")"


def citation_tail_regex(k: int, spec: ConstraintSpec = ConstraintSpec()) -> str:
    """What ends a sentence: an optional space, 1..M groups ``[n]`` with n in 1..k, a full stop."""
    return f" ?(?:\\[{number_regex(k)}\\]){{1,{spec.max_citations}}}\\."


def sentence_regex(k: int, spec: ConstraintSpec = ConstraintSpec()) -> str:
    word = word_regex(spec.max_word_chars)
    return f"{word}(?: {word}){{0,{spec.max_words - 1}}}{citation_tail_regex(k, spec)}"


def answer_regex(k: int, spec: ConstraintSpec = ConstraintSpec()) -> str:
    """The whole answer: 1..N cited sentences separated by single spaces (one leading space allowed).

    Valid for Python's ``re`` (``fullmatch``) and for vLLM's structured outputs.
    """
    s = sentence_regex(k, spec)
    # One optional leading space: a plain "...Answer:" prompt is naturally continued by one.
    return f" ?{s}(?: {s}){{0,{spec.max_sentences - 1}}}"


def tail_reserve(k: int, spec: ConstraintSpec = ConstraintSpec()) -> int:
    """Tokens kept back for the citation tail: its longest form, one token per character."""
    return 1 + spec.max_citations * (2 + len(str(k))) + 1


def split_complete(text: str) -> tuple[str, str]:
    """``(complete sentences, unfinished rest)`` of a (possibly cut) constrained answer.

    ``]`` appears in a constrained answer only inside citation groups, so the last ``].``
    ends the last complete sentence.
    """
    cut = text.rfind("].")
    if cut < 0:
        return "", text
    return text[: cut + 2], text[cut + 2 :].lstrip(" ")


def whole_words(unfinished: str, cut_by_length: bool) -> str:
    """The unfinished sentence without a partial citation group, and, when the decode was cut
    by the token limit, without its last (possibly cut) word."""
    text = unfinished
    if "[" in text:
        return text[: text.index("[")].rstrip(" ")
    if cut_by_length:
        text = text[: text.rfind(" ")] if " " in text else ""
    return text.rstrip(" ")


@dataclass(frozen=True)
class ConstrainedResult:
    generation: Generation
    #: True when the citation tail was written by a second decode after a token-limit cut.
    closed: bool = False
    #: Characters of unfinished text dropped after the last complete sentence.
    dropped_chars: int = 0


def generate_constrained(
    generator: object,
    prompts: Sequence[str],
    ks: Sequence[int],
    params: GenerationParams,
    spec: ConstraintSpec = ConstraintSpec(),
) -> list[ConstrainedResult]:
    """Generate one constrained answer per prompt; ``ks[i]`` passages were shown to prompt i.

    Prompts with the same ``k`` share one batched call (one regex per ``k``). Every returned
    text fully matches :func:`answer_regex` for its ``k``, or is empty (``k == 0``: nothing
    to cite; or the model wrote no whole word within the budget). Raises :class:`GeneratorUnavailableError` when a backend
    returns text that breaks the constraint (a server that ignored it).
    """
    if len(prompts) != len(ks):
        raise ValueError("one k per prompt")
    results: list[ConstrainedResult | None] = [None] * len(prompts)
    for i, k in enumerate(ks):
        if k == 0:
            # Nothing was shown, so nothing can be cited: no answer rather than an uncited one.
            results[i] = ConstrainedResult(Generation("", finish_reason="stop"))
    for k in sorted(set(ks) - {0}):
        idx = [i for i, kk in enumerate(ks) if kk == k]
        for i, r in zip(idx, _generate_for_k(generator, [prompts[i] for i in idx], k, params, spec)):
            results[i] = r
    return [r for r in results if r is not None]


def _generate_for_k(
    generator: object, prompts: list[str], k: int, params: GenerationParams, spec: ConstraintSpec
) -> list[ConstrainedResult]:
    reserve = tail_reserve(k, spec)
    if params.max_tokens <= reserve:
        raise ConfigError(
            f"constrained citations need --max-tokens above {reserve} (the citation tail alone can take "
            f"{reserve} tokens); got {params.max_tokens}"
        )
    pattern = answer_regex(k, spec)
    main = _with(params, max_tokens=params.max_tokens - reserve, regex=pattern)
    gens = generator.generate(prompts, main)  # type: ignore[attr-defined]
    out: list[ConstrainedResult | None] = [None] * len(prompts)
    rescue: list[tuple[int, str]] = []
    for i, g in enumerate(gens):
        done, rest = split_complete(g.text)
        if done:
            _check_matches(done, pattern, generator)
            out[i] = ConstrainedResult(_replace_text(g, done), dropped_chars=len(rest))
            continue
        words = whole_words(rest, g.finish_reason == "length")
        if not words:
            log.debug("constrained answer %d has no whole word within %d tokens", i, main.max_tokens)
            out[i] = ConstrainedResult(_replace_text(g, ""), dropped_chars=len(rest))
            continue
        rescue.append((i, words))
    if rescue:
        tail = _with(params, max_tokens=reserve, regex=citation_tail_regex(k, spec))
        # The answer continues the prompt directly, so prompt + words is where decoding stopped.
        closes = generator.generate([prompts[i] + w for i, w in rescue], tail)  # type: ignore[attr-defined]
        for (i, words), c in zip(rescue, closes):
            text = words + c.text
            if not re.fullmatch(pattern, text):
                # The tail decode was cut before its full stop, or the words alone break a bound.
                log.debug("constrained answer %d could not be closed: %r", i, text)
                text = ""
            out[i] = ConstrainedResult(_replace_text(gens[i], text, "stop" if text else "length"), closed=bool(text))
    return [r for r in out if r is not None]


def _check_matches(text: str, pattern: str, generator: object) -> None:
    if not re.fullmatch(pattern, text):
        name = type(generator).__name__
        raise GeneratorUnavailableError(
            f"{name} returned text that breaks the citation constraint ({text[:80]!r}...): the backend "
            "ignored the structured-output regex; constrained citations need vLLM's structured outputs "
            "(in process, or a vLLM OpenAI-compatible server that accepts `structured_outputs`)"
        )


def _with(params: GenerationParams, **changes: object) -> GenerationParams:
    from dataclasses import replace

    return replace(params, **changes)  # type: ignore[arg-type]


def _replace_text(g: Generation, text: str, finish_reason: str | None = None) -> Generation:
    return Generation(text=text, token_ids=g.token_ids if text == g.text else (), finish_reason=finish_reason or g.finish_reason)
