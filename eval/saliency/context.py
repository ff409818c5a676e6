"""What an attribution works on: the answer, the passages exactly as the generator saw them,
the sources that can be removed (whole passages or their sentences), and the prompt for any
subset of those sources.

Removal rule (the same for every method): a removed passage's ``Document [n]`` line is left
out of the prompt and every other document keeps its number, so ``[n]`` in the answer still
names the same passage; a removed evidence sentence is cut from its passage's text (a passage
whose sentences are all removed is left out like a removed passage). Prompts are rendered by
:func:`pipeline.prompting.render`, the code ``citerag ask`` uses, with the passages as shown
(already cut to ``max_doc_tokens``, text quoted as in the prompt).

Only the answer's own words are scored: tokens inside citation markers (``[2]``) are excluded
from every target, because removing document 2 makes "[2]" unlikely whether or not its
content was used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Literal

import numpy as np

from pipeline.citations import MARKER_RE, cite_answer, sentence_spans
from pipeline.errors import ContextBudgetError, InputError
from pipeline.io import json_or_none, jsonl_lines, loads_json, read_user_text
from pipeline.prompting import PromptConfig, build_prompt, quote_document_text, render, validate_question
from pipeline.protocols import Generator, Tokenizer
from pipeline.types import AttributedAnswer, Passage, Sentence

#: What a source is: a whole passage, or one sentence of a passage.
Level = Literal["passage", "sentence"]
LEVELS: tuple[str, ...] = ("passage", "sentence")

#: Boolean keep-masks over the sources of one level, shape (n_masks, n_sources).
MaskMatrix = np.ndarray


@dataclass(frozen=True)
class Source:
    """A removable unit of evidence: passage ``passage`` (its number as shown, from 1) or the
    sentence ``text == shown_text[start:end]`` of it."""

    index: int
    passage: int
    start: int
    end: int
    text: str
    #: 1-based sentence number inside the passage (sentence level), or 0 for a whole passage.
    sentence: int = 0

    @property
    def label(self) -> str:
        """``[2]`` for passage 2, ``[2].3`` for its third sentence."""
        return f"[{self.passage}]" + (f".{self.sentence}" if self.sentence else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "label": self.label,
            "passage": self.passage,
            "sentence": self.sentence,
            "start": self.start,
            "end": self.end,
            "text": self.text,
        }


@dataclass(frozen=True)
class TextToken:
    """A token with its character span in the text it was cut from."""

    text: str
    start: int
    end: int


@dataclass(frozen=True)
class AnswerToken(TextToken):
    #: 0-based answer sentence the token belongs to, or -1 (whitespace between sentences).
    sentence: int = -1
    #: True when the token lies inside a citation marker; such tokens are never targets.
    marker: bool = False

    @property
    def scorable(self) -> bool:
        return self.sentence >= 0 and not self.marker

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "start": self.start,
            "end": self.end,
            "sentence": self.sentence,
            "marker": self.marker,
        }


@dataclass(frozen=True)
class AttributionContext:
    """One answer prepared for attribution (build it with :func:`prepare`)."""

    question: str
    answer: str
    sentences: tuple[Sentence, ...]
    #: The passages as shown, numbered from 1; ``text`` is the quoted text the prompt holds.
    passages: tuple[Passage, ...]
    #: The full prompt (every source kept), byte-identical to what ``citerag ask`` builds.
    prompt: str
    #: The answer's tokens as ``Generator.score`` tokenizes the continuation.
    tokens: tuple[AnswerToken, ...]
    cfg: PromptConfig = field(default_factory=PromptConfig)
    tokenizer: Tokenizer | None = field(default=None, repr=False, compare=False)

    def sources(self, level: Level) -> tuple[Source, ...]:
        """The removable sources at ``level``, in prompt order."""
        check_level(level)
        return self._sources[level]

    @cached_property
    def _sources(self) -> dict[str, tuple[Source, ...]]:
        whole = tuple(
            Source(i, n, 0, len(p.text), p.text) for i, (n, p) in enumerate(enumerate(self.passages, start=1))
        )
        parts: list[Source] = []
        for n, p in enumerate(self.passages, start=1):
            for i, (s, e) in enumerate(sentence_spans(p.text), start=1):
                parts.append(Source(len(parts), n, s, e, p.text[s:e], i))
        return {"passage": whole, "sentence": tuple(parts)}

    def prompt_for(self, keep: Sequence[bool] | np.ndarray, level: Level) -> str:
        """The prompt with only the sources where ``keep`` is true (see the module docstring)."""
        srcs = self.sources(level)
        if len(keep) != len(srcs):
            raise ValueError(f"keep has {len(keep)} entries for {len(srcs)} {level} sources")
        docs: list[tuple[int, Passage]] = []
        for n, p in enumerate(self.passages, start=1):
            own = [(s, bool(k)) for s, k in zip(srcs, keep) if s.passage == n]
            if all(k for _, k in own):  # also a passage with no sentence to remove: always shown
                docs.append((n, p))
            elif any(k for _, k in own):
                docs.append((n, replace(p, text=" ".join(s.text for s, k in own if k))))
        assert self.tokenizer is not None, "AttributionContext needs its tokenizer: build it with prepare()"
        return render(self.question, docs, self.tokenizer, self.cfg)

    def sentence_logprobs(self, token_logprobs: Sequence[float]) -> np.ndarray:
        """Per answer sentence, the sum of its scorable tokens' log-probs (NaN if none)."""
        if len(token_logprobs) != len(self.tokens):
            raise InputError(
                f"the generator scored {len(token_logprobs)} answer tokens, expected {len(self.tokens)}: "
                "the scoring backend must use the same tokenizer as the one the answer was prepared with"
            )
        out = np.full(len(self.sentences), np.nan)
        for t, lp in zip(self.tokens, token_logprobs):
            if t.scorable:
                out[t.sentence] = lp if np.isnan(out[t.sentence]) else out[t.sentence] + lp
        return out

    def token_weights(self) -> np.ndarray:
        """Matrix (n_sentences, n_tokens): 1 where the token is a scorable token of the sentence."""
        w = np.zeros((len(self.sentences), len(self.tokens)))
        for i, t in enumerate(self.tokens):
            if t.scorable:
                w[t.sentence, i] = 1.0
        return w


def check_level(level: str) -> None:
    if level not in LEVELS:
        raise InputError(f"unknown level {level!r}; valid levels: {', '.join(LEVELS)}")


def token_spans(tokenizer: Tokenizer, ids: Sequence[int], text: str) -> list[TextToken]:
    """Each token of ``ids`` (which encode ``text``, possibly after special tokens such as BOS
    that are not in ``text``) with its character span in ``text``, found by incremental decoding.

    A token that completes a multi-byte character gets the character; tokens before ``text``
    starts get empty spans at 0.
    """
    full = tokenizer.decode(list(ids))
    if not full.endswith(text):
        raise InputError("the tokenizer does not decode its tokens back to the same text; saliency needs one that does")
    shift = len(full) - len(text)
    spans: list[TextToken] = []
    prev = 0
    for i in range(len(ids)):
        end = len(tokenizer.decode(list(ids[: i + 1]))) - shift if i + 1 < len(ids) else len(text)
        end = min(max(end, prev), len(text))
        spans.append(TextToken(text[prev:end], prev, end))
        prev = end
    return spans


def anchor(text: str, start: int, end: int) -> int:
    """Where a token sits in ``text``: its first non-space character, else (a whitespace-only
    token) its start; -1 for an empty span."""
    for i in range(start, end):
        if not text[i].isspace():
            return i
    return start if start < end else -1


def locate(spans: Sequence[tuple[int, int]], pos: int) -> int:
    """Index of the span containing ``pos`` (or -1)."""
    if pos < 0:
        return -1
    for i, (s, e) in enumerate(spans):
        if s <= pos < e:
            return i
    return -1


def answer_tokens(tokenizer: Tokenizer, answer: str, sentences: Sequence[Sentence]) -> tuple[AnswerToken, ...]:
    """The answer's tokens, each assigned to the sentence holding its :func:`anchor` (whitespace
    between sentences belongs to none)."""
    markers = [m.span() for m in MARKER_RE.finditer(answer)]
    sent_spans = [(s.start, s.end) for s in sentences]
    out = []
    for t in token_spans(tokenizer, tokenizer.encode(answer), answer):
        chars = [i for i in range(t.start, t.end) if not answer[i].isspace()]
        marker = bool(chars) and all(locate(markers, i) >= 0 for i in chars)
        out.append(AnswerToken(t.text, t.start, t.end, locate(sent_spans, anchor(answer, t.start, t.end)), marker))
    return tuple(out)


def prepare(answer: AttributedAnswer, generator: Generator, *, cfg: PromptConfig | None = None) -> AttributionContext:
    """Rebuild the prompt ``answer`` was generated from and tokenize the answer for scoring.

    Every passage must fit the generator's window together with the answer (raises
    :class:`ContextBudgetError` otherwise): attribution over a prompt that drops passages
    would not be the prompt the generator saw.
    """
    cfg = cfg or PromptConfig()
    layout = answer.report.get("prompt_layout")
    if isinstance(layout, str) and layout != cfg.layout:
        cfg = replace(cfg, layout=layout)  # the layout the answer was generated with
    question = validate_question(answer.question)
    text = answer.text
    if not text.strip():
        raise InputError("the answer is empty: there is nothing to attribute")
    if not answer.passages:
        raise InputError("the answer has no passages: attribution needs the passages shown to the generator")
    tok = generator.tokenizer
    built = build_prompt(
        question,
        answer.passages,
        tok,
        max_context=generator.max_context,
        max_new_tokens=len(tok.encode(text)) + 1,
        cfg=cfg,
    )
    if len(built.shown) < len(answer.passages):
        raise ContextBudgetError(
            f"only {len(built.shown)} of the {len(answer.passages)} passages fit the {generator.max_context}-token "
            "context together with the answer: pass fewer passages or raise --max-model-len"
        )
    shown = tuple(replace(p, text=quote_document_text(p.text)) for p in built.shown)
    sentences = answer.sentences or cite_answer(text, shown).sentences
    for i, s in enumerate(sentences, start=1):
        if text[s.start : s.end] != s.text:
            raise InputError(f"answer sentence {i} does not match the answer text at {s.start}-{s.end}: {s.text!r}")
    ctx = AttributionContext(
        question, text, tuple(sentences), shown, built.text, answer_tokens(tok, text, sentences), cfg, tok
    )
    if ctx.prompt_for([True] * len(shown), "passage") != built.text:
        raise AssertionError("re-rendering the full prompt changed it")  # quote_document_text is idempotent
    return ctx


# -- reading answers -------------------------------------------------------------------------


def answer_from_dict(obj: Mapping[str, Any], *, where: str = "the answer") -> AttributedAnswer:
    """An :class:`AttributedAnswer` from ``citerag ask --json`` output (``AttributedAnswer.to_dict``).

    Needs ``question``, ``answer`` (or ``text``) and ``passages`` (``text``, optional ``title``,
    ``doc_id``, ``start``, ``end``, ``score``, numbered in list order); ``sentences`` are
    recomputed from the answer when absent.
    """
    if not isinstance(obj, Mapping):
        raise InputError(f"{where}: expected a JSON object written by `citerag ask --json`")
    text = obj.get("answer", obj.get("text"))
    if not isinstance(obj.get("question"), str) or not isinstance(text, str):
        raise InputError(f'{where}: needs a string "question" and a string "answer" (as `citerag ask --json` writes)')
    passages = passages_from_rows(obj.get("passages"), where=where)
    sentences: tuple[Sentence, ...] = ()
    if obj.get("sentences"):
        try:
            sentences = tuple(
                Sentence(
                    s["text"],
                    int(s["start"]),
                    int(s["end"]),
                    tuple(int(n) for n in s.get("citations", ())),
                    bool(s.get("post_hoc", False)),
                )
                for s in obj["sentences"]
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(f'{where}: malformed "sentences" ({exc.__class__.__name__}: {exc})') from None
    else:
        sentences = cite_answer(text, passages).sentences
    report = {"prompt_layout": obj["prompt_layout"]} if isinstance(obj.get("prompt_layout"), str) else {}
    # After `ask --verify`, passages marked "shown": false are evidence the verifier found in the
    # index: the generator never saw them, so they are no part of the context explained here, and
    # citations of them are not citations of the generator's context.
    rows = obj["passages"]
    n_shown = next((i for i, r in enumerate(rows) if r.get("shown") is False), len(rows))
    if n_shown < len(passages):
        passages = passages[:n_shown]
        sentences = tuple(replace(s, citations=tuple(n for n in s.citations if n <= n_shown)) for s in sentences)
        report["unshown_passages_left_out"] = len(rows) - n_shown
    return AttributedAnswer(obj["question"], text, sentences, passages, report)


def passages_from_rows(rows: Any, *, where: str = "the passages") -> tuple[Passage, ...]:
    """Passages from JSON objects with a string ``text`` (``title``, ``doc_id``/``id`` optional)."""
    if not isinstance(rows, list) or not rows:
        raise InputError(f'{where}: needs a non-empty "passages" list (the passages shown to the generator)')
    out = []
    for i, r in enumerate(rows, start=1):
        if not isinstance(r, Mapping) or not isinstance(r.get("text"), str):
            raise InputError(f'{where}: passage {i} needs a string "text"')
        doc_id = str(r.get("doc_id", r.get("id", f"passage-{i}")))
        try:
            start = int(r.get("start") or 0)
            end = int(r["end"]) if r.get("end") is not None else start + len(r["text"])
            score = float(r.get("score", 0.0) or 0.0)
        except (TypeError, ValueError) as exc:
            raise InputError(f'{where}: passage {i} has a malformed "start", "end" or "score" ({exc})') from None
        out.append(Passage(doc_id, r["text"], str(r.get("title") or ""), score, start, end))
    return tuple(out)


def answer_from_parts(question: str, passages: Sequence[Passage], text: str) -> AttributedAnswer:
    """An answer given as question + passages + text: sentences and ``[n]`` parsed as ``ask`` does."""
    return AttributedAnswer(question, text, cite_answer(text, passages).sentences, tuple(passages))


def read_answers(path: str) -> list[AttributedAnswer]:
    """Answers from a file: one JSON object (``ask --json``) or JSONL (``ask --out``)."""
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise InputError(f"answer file not found: {p}")
    expected = "expected the output of `citerag ask --json` (or `ask --out` JSONL)"
    raw = read_user_text(p, expected)
    if not raw.strip():
        raise InputError(f"{p} is empty: {expected}")
    ok, whole = json_or_none(raw, str(p))
    objs = [whole] if ok else [loads_json(line, f"{p}:{n}", expected) for n, line in jsonl_lines(raw)]
    if not objs:
        raise InputError(f"{p} holds no answers")
    return [
        answer_from_dict(o, where=f"{p}" + (f" answer {i}" if len(objs) > 1 else ""))
        for i, o in enumerate(objs, start=1)
    ]
