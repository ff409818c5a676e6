"""Citations by construction: decoding constrained so every sentence ends with a citation.

In the ``constrained`` citation mode the generator decodes under a regular expression
(vLLM's structured outputs, compiled by xgrammar), so the model itself must choose, for every
sentence, which of the ``k`` documents it shows supports it. The answer is 1..N sentences
separated by one space; each sentence is 1..W words and ends with 1..M citation groups,
before or after its full stop (``cite_position``): ``Paris is the capital [1].`` or
``It opened in 1937. [2][3]``. Sentence text never contains ``[``, ``]``, a newline, the
string ``Document`` (the prompt's document header), or a sentence-ending ``.``/``!``/``?``
(one may appear inside a word, as in ``3.5`` or ``U.S``), so
:func:`pipeline.citations.sentence_spans` never finds a sentence without a citation, and
every number is within 1..k.

The expression is written to stay cheap for xgrammar's token masks on a 49k vocabulary
(measured on SmolLM2's tokenizer, 2 busy cores): words are unbounded runs of characters and
``Document`` is excluded by a deterministic automaton (about 0.8 ms per token), whereas a
bound on word length cost ~40 ms and an ambiguous exclusion ~150-400 ms per token.

A ``max_tokens`` cut cannot leave a sentence without its citation: the main decode gets
``max_tokens`` minus a reserve (the longest citation tail, one token per character), then

* text after the last complete sentence is dropped (a prefix of the regex's language, cut
  at a sentence end, is in the language);
* when no sentence completed at all, the unfinished sentence is cut back to its last whole
  word and one more constrained decode, from the prompt plus that text, writes only the
  citation tail (`` [n].``) within the reserve: the model still chooses the source.

So the answer never exceeds ``max_tokens`` and every sentence carries a citation it chose.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from pipeline.errors import ConfigError, GeneratorUnavailableError
from pipeline.types import Generation, GenerationParams

log = logging.getLogger(__name__)

CitationMode = Literal["auto", "post-hoc", "constrained", "use-aware"]
#: Valid citation modes, in the order the CLI lists them. ``auto`` (the default) is
#: ``constrained`` where the generator can constrain decoding and the loop is not iterative,
#: else ``post-hoc`` (chosen on NQ-open selection questions 1000-1099, BENCHMARKS.md
#: "Citation modes": the model chose every citation at equal accuracy, 0.93x the latency).
CITATION_MODES: tuple[str, ...] = ("auto", "post-hoc", "constrained", "use-aware")
#: Where a sentence's citation groups go: before its full stop ("... [1]."), after it
#: ("... . [1]"), or either, as the model prefers.
CITE_POSITIONS: tuple[str, ...] = ("before-stop", "after-stop", "either")

#: No answer text may contain this (the prompt's document header).
FORBIDDEN = "Document"

# Characters that never appear inside a word: whitespace and control characters (everything
# Python's ``\s`` matches, so the sentence splitter and the regex agree), brackets, and the
# sentence enders, which are allowed only inside a word, followed by a plain character.
_SPACE = r"\x00-\x20\x7f-\xa0\u1680\u2000-\u200f\u2028-\u202f\u205f-\u2064\u3000\ufeff"
_ENDERS = ".!?"
_CLOSERS = "\"'\u201d\u2019)"


def check_citation_mode(mode: str) -> str:
    """``mode`` when it is one of :data:`CITATION_MODES`, else a :class:`ConfigError` listing them."""
    if mode not in CITATION_MODES:
        raise ConfigError(f"unknown citation mode {mode!r}; valid modes: {', '.join(CITATION_MODES)}")
    return mode


def can_constrain(generator: object) -> bool:
    """Whether ``generator`` decodes under ``GenerationParams.regex`` (vLLM in process, vLLM's
    async engine and vLLM servers declare ``supports_regex = True``; wrappers forward it)."""
    return bool(getattr(generator, "supports_regex", False))


def resolve_citation_mode(mode: str, generator: object, *, iterative: bool = False) -> str:
    """The mode actually used: ``auto`` becomes ``constrained`` when ``generator`` can
    constrain decoding and the loop is not iterative, else ``post-hoc``; others are kept."""
    check_citation_mode(mode)
    if mode != "auto":
        return mode
    return "constrained" if can_constrain(generator) and not iterative else "post-hoc"


@dataclass(frozen=True)
class ConstraintSpec:
    """Shape of a constrained answer (bounds of the regular expression)."""

    #: Sentences per answer (N).
    max_sentences: int = 3
    #: Words per sentence (W).
    max_words: int = 40
    #: Citation groups ``[n]`` per sentence (M). ALCE scores at most 3.
    max_citations: int = 3
    cite_position: str = "either"

    def __post_init__(self) -> None:
        for name in ("max_sentences", "max_words", "max_citations"):
            if getattr(self, name) < 1:
                raise ConfigError(f"ConstraintSpec.{name} must be at least 1 (got {getattr(self, name)})")
        if self.cite_position not in CITE_POSITIONS:
            raise ConfigError(f"unknown cite_position {self.cite_position!r}; valid: {', '.join(CITE_POSITIONS)}")


def _unit(exclude: str = "") -> str:
    """One word unit other than ``exclude``: a plain character, or an ender followed by a
    plain character that is not a closing quote and not the forbidden string's first letter
    (``.D`` must not start ``Document``)."""
    plain = f"[^{_SPACE}\\[\\]{re.escape(_ENDERS)}{re.escape(exclude)}]"
    after = f"[^{_SPACE}\\[\\]{re.escape(_ENDERS)}{re.escape(_CLOSERS)}{re.escape(FORBIDDEN[0])}]"
    return f"(?:{plain}|[{re.escape(_ENDERS)}]{after})"


def word_regex() -> str:
    """One word (a run of units) that never contains :data:`FORBIDDEN`.

    A deterministic automaton over the partial match of ``Document``: from "nothing
    matched", a unit other than ``D`` stays, ``D`` starts a match; a started match goes on
    with the next letter, restarts at ``D``, or breaks on anything else; ``Documen`` cannot
    be followed by ``t``. ``D`` must not occur again in the word (true for ``Document``).
    """
    head, rest = FORBIDDEN[0], FORBIDDEN[1:]
    assert head not in rest
    # A partial match after D: a proper prefix of "ocument" (possibly empty).
    partial = ""
    for ch in reversed(rest[:-1]):
        partial = f"(?:{re.escape(ch)}{partial})?"
    # Leaving a partial match for "nothing matched": a unit that is neither D nor the next letter.
    leave = _unit(head + rest[-1])
    for i in range(len(rest) - 2, -1, -1):
        leave = f"(?:{_unit(head + rest[i])}|{re.escape(rest[i])}{leave})"
    started = f"{re.escape(head)}(?:{partial}{re.escape(head)})*"
    item = f"(?:{_unit(head)}|{started}{leave})"
    return f"(?:{item}+(?:{started}{partial})?|{started}{partial})"


def number_regex(k: int) -> str:
    """The citation numbers 1..k (no leading zeros)."""
    if k < 1:
        raise ConfigError(f"constrained citations need at least one shown passage (k={k})")
    if k <= 9:
        return "1" if k == 1 else f"[1-{k}]"
    return "(?:" + "|".join(str(n) for n in range(k, 0, -1)) + ")"


def _groups(k: int, spec: ConstraintSpec) -> str:
    return f"(?:\\[{number_regex(k)}\\]){{1,{spec.max_citations}}}"


def citation_tail_regex(k: int, spec: ConstraintSpec = ConstraintSpec(), *, after_stop: bool | None = None) -> str:
    """What ends a sentence. ``after_stop=True``: the text so far already ends with its full
    stop, only `` [n]`` follows; False: it has none yet; None: the spec's choice."""
    groups = _groups(k, spec)
    before, after = f" ?{groups}\\.", f"[{re.escape(_ENDERS)}] ?{groups}"
    if after_stop is True:
        return f" ?{groups}"
    if after_stop is False and spec.cite_position == "either":
        return f"(?:{before}|{after})"
    return {"before-stop": before, "after-stop": after, "either": f"(?:{before}|{after})"}[spec.cite_position]


def sentence_regex(k: int, spec: ConstraintSpec = ConstraintSpec()) -> str:
    word = word_regex()
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


#: Where a constrained sentence can end: its last citation group, then its full stop when the
#: citation came before it (``... [2]`` or ``... [2].``).
SENTENCE_END = r"\]\.?"


def split_complete(text: str, pattern: str) -> tuple[str, str]:
    """``(complete sentences, unfinished rest)`` of a (possibly cut) constrained answer: the
    longest prefix ending at a citation group (``]`` or ``].``) that fully matches ``pattern``."""
    rx = re.compile(pattern)
    for m in reversed(list(re.finditer(SENTENCE_END, text))):
        for end in sorted({m.end(), m.start() + 1}, reverse=True):
            if rx.fullmatch(text, 0, end):
                return text[:end], text[end:].lstrip(" ")
    return "", text


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
    to cite; or the model wrote no whole word within the budget). Raises
    :class:`GeneratorUnavailableError` when a backend returns text that breaks the constraint
    (a server that ignored it).
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
    main = replace(params, max_tokens=params.max_tokens - reserve, regex=pattern)
    gens = generator.generate(prompts, main)  # type: ignore[attr-defined]
    out: list[ConstrainedResult | None] = [None] * len(prompts)
    rescue: list[tuple[int, str]] = []
    for i, g in enumerate(gens):
        if g.finish_reason == "stop" and not params.stop and not re.fullmatch(pattern, g.text):
            # Under the regex the model can only end where it accepts: the backend ignored it.
            _broken(g.text, generator)
        done, rest = split_complete(g.text, pattern)
        if done:
            out[i] = ConstrainedResult(_replace_text(g, done), dropped_chars=len(rest))
            continue
        words = whole_words(rest, g.finish_reason == "length")
        if not words:
            log.debug("constrained answer %d has no whole word within %d tokens", i, main.max_tokens)
            out[i] = ConstrainedResult(_replace_text(g, ""), dropped_chars=len(rest))
            continue
        rescue.append((i, words))
    # The answer continues the prompt directly, so prompt + words is where decoding stopped.
    for stopped in (False, True):
        todo = [(i, w) for i, w in rescue if w.endswith(tuple(_ENDERS)) is stopped]
        if not todo:
            continue
        tail = replace(params, max_tokens=reserve, regex=citation_tail_regex(k, spec, after_stop=stopped))
        closes = generator.generate([prompts[i] + w for i, w in todo], tail)  # type: ignore[attr-defined]
        for (i, words), c in zip(todo, closes):
            text = words + c.text
            if not re.fullmatch(pattern, text):
                # The tail decode was cut before its full stop, or the words alone break a bound.
                log.debug("constrained answer %d could not be closed: %r", i, text)
                text = ""
            out[i] = ConstrainedResult(_replace_text(gens[i], text, "stop" if text else "length"), closed=bool(text))
    return [r for r in out if r is not None]


def _broken(text: str, generator: object) -> None:
    name = type(generator).__name__
    raise GeneratorUnavailableError(
        f"{name} returned text that breaks the citation constraint ({text[:80]!r}...): the backend "
        "ignored the structured-output regex; constrained citations need vLLM's structured outputs "
        "(in process, or a vLLM OpenAI-compatible server that accepts `structured_outputs`)"
    )


def _replace_text(g: Generation, text: str, finish_reason: str | None = None) -> Generation:
    return Generation(
        text=text, token_ids=g.token_ids if text == g.text else (), finish_reason=finish_reason or g.finish_reason
    )
