"""The test doubles: one model-free, deterministic fake per protocol, shared by every test.

Protocols and their fakes:

* ``Tokenizer`` (pipeline.protocols): :class:`FakeTokenizer`
* ``Generator`` (pipeline.protocols): :class:`FakeGenerator`
* ``Retriever`` (pipeline.protocols): :class:`FakeRetriever`
* ``SupportJudge`` (pipeline.protocols): :class:`FakeJudge`
* ``Embedder`` (pipeline.protocols): :class:`FakeEmbedder`
* ``PostHocCiter`` (pipeline.citations): :class:`FakeCiter`
* ``ClaimSplitter`` (verifiers.claims): :class:`FakeClaimSplitter`
* ``QuestionGenerator`` (verifiers.questions): :class:`FakeQuestionGenerator`
* ``Editor`` (verifiers.editor): :class:`FakeEditor`

Each records what it was asked, so tests can check batching and inputs; each is configured by
plain data or a small function rather than subclassed, so one class covers every test's need.
Production code never imports this module: components take their dependencies as constructor
arguments, and tests pass these (tests/test_fakes.py checks each against its protocol).
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from pipeline.generators.base import check_params, check_prompts, check_score_inputs, cut_at_stop, reject_regex
from pipeline.types import Generation, GenerationParams, Passage
from verifiers.claims import Claim

# --------------------------------------------------------------------------- words

_STOP = frozenset("a an the of in on at to is was were and or by for with as it its that this".split())


def content_words(text: str) -> list[str]:
    """Lower-cased words of ``text`` without common stop words."""
    return [w for w in re.findall(r"\w+", text.lower()) if w not in _STOP]


def containment(evidence: str, claim: str) -> float:
    """Share of the claim's content words that occur in the evidence (1.0 for no words)."""
    words = content_words(claim)
    if not words:
        return 1.0
    have = set(content_words(evidence))
    return sum(w in have for w in words) / len(words)


# --------------------------------------------------------------------------- tokenizer

_PIECE = re.compile(r"\s+|\w+|[^\w\s]")


class FakeTokenizer:
    """A ``Tokenizer``: ids assigned on first sight (stable within one instance).

    By default text splits into runs of whitespace, word characters and single punctuation
    marks, so ``decode(encode(s)) == s``. With ``words=True`` a token is a whitespace-separated
    word (whitespace is dropped; ``decode`` joins with single spaces), which makes token counts
    easy to compute by hand.

    ``chat_template`` picks the toy chat format: ``"transcript"`` gives ``role: content`` lines
    ending in ``assistant:``; ``"tags"`` gives ``<role>content</role>`` ending in
    ``<assistant>``; None means the tokenizer has no template.
    """

    def __init__(self, chat_template: Literal["transcript", "tags"] | None = "transcript", words: bool = False) -> None:
        self._ids: dict[str, int] = {}
        self._pieces: list[str] = []
        self.chat_template = chat_template
        self.words = words
        self.bos_token_id: int | None = None

    def _id(self, piece: str) -> int:
        i = self._ids.get(piece)
        if i is None:
            i = self._ids[piece] = len(self._pieces)
            self._pieces.append(piece)
        return i

    def encode(self, text: str) -> list[int]:
        pieces = text.split() if self.words else _PIECE.findall(text)
        return [self._id(p) for p in pieces]

    def decode(self, ids: Sequence[int]) -> str:
        return (" " if self.words else "").join(self._pieces[i] for i in ids)

    def apply_chat_template(self, messages: list[dict[str, str]]) -> str | None:
        if self.chat_template is None:
            return None
        if self.chat_template == "tags":
            return "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in messages) + "<assistant>"
        return "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant:"


# --------------------------------------------------------------------------- generator

#: A canned reply: the text (cut at ``stop`` and ``max_tokens`` like a real backend) or a whole
#: ``Generation`` returned as it is (to script a finish reason).
Reply = str | Generation


class FakeGenerator:
    """A ``Generator`` with canned replies that records every prompt it saw.

    ``replies`` is a list (used in turn, cycling when exhausted) or a function of
    ``(prompt, params)``. Text replies honour ``stop`` and ``max_tokens`` (counted in tokenizer
    pieces). Like a backend without structured outputs, it refuses ``params.regex`` unless
    ``regex=True`` (then the replies stand in for constrained decoding); ``supports_regex=True``
    also declares the capability, so citations "auto" resolve to "constrained". ``score`` returns
    ``scorer(prompt, continuation)`` when given, else deterministic pseudo log-probs in
    ``[-10, 0)`` derived from a hash of the prompt and the token. ``delay`` seconds are slept
    in every ``generate`` call (a slow backend). With ``stream`` (a list of text pieces) it
    also has the optional ``stream`` method of streaming backends, which yields those pieces
    and a final empty "stop" delta, and sets ``stream_closed`` when the stream is closed.
    ``active`` counts the ``generate`` calls running now and ``peak_active`` the most at once
    (to check that callers bound their concurrency).
    """

    def __init__(
        self,
        replies: Sequence[Reply] | Callable[[str, GenerationParams], Reply] | None = None,
        max_context: int = 4096,
        *,
        tokenizer: FakeTokenizer | None = None,
        scorer: Callable[[str, str], list[float]] | None = None,
        regex: bool = False,
        supports_regex: bool = False,
        delay: float = 0.0,
        stream: Sequence[str] | None = None,
    ) -> None:
        self.replies = replies if replies is not None else ["I don't know."]
        self.max_context = max_context
        self._tokenizer = tokenizer or FakeTokenizer()
        self.scorer = scorer
        self.regex = regex
        #: What citations "auto" reads (pipeline.constrained.can_constrain): True -> "constrained".
        self.supports_regex = supports_regex
        if supports_regex and not regex:
            raise ValueError("supports_regex=True needs regex=True")
        self.delay = delay
        self._turn = 0
        #: Every prompt passed to ``generate``, in order.
        self.prompts: list[str] = []
        #: The prompts of each ``generate`` call.
        self.batches: list[list[str]] = []
        #: The ``GenerationParams`` of each ``generate`` call.
        self.calls: list[GenerationParams] = []
        #: Every ``(prompt, continuation)`` pair passed to ``score``, in order.
        self.scored: list[tuple[str, str]] = []
        #: How many times ``score`` was called.
        self.score_calls = 0
        self.stream_closed = False
        self.active = 0
        self.peak_active = 0
        self._active_lock = threading.Lock()
        if stream is not None:
            pieces = tuple(stream)
            self.stream = lambda prompt, params: self._stream(pieces)

    @property
    def tokenizer(self) -> FakeTokenizer:
        return self._tokenizer

    def _reply(self, prompt: str, params: GenerationParams) -> Reply:
        if callable(self.replies):
            return self.replies(prompt, params)
        if not self.replies:
            return ""
        reply = self.replies[self._turn % len(self.replies)]
        self._turn += 1
        return reply

    def _stream(self, pieces: tuple[str, ...]) -> Iterator[Generation]:
        try:
            for piece in pieces:
                yield Generation(piece, (1,), "")
            yield Generation("", (), "stop")
        finally:
            self.stream_closed = True

    def generate(self, prompts: Sequence[str], params: GenerationParams) -> list[Generation]:
        with self._active_lock:
            self.active += 1
            self.peak_active = max(self.peak_active, self.active)
        try:
            return self._generate(prompts, params)
        finally:
            with self._active_lock:
                self.active -= 1

    def _generate(self, prompts: Sequence[str], params: GenerationParams) -> list[Generation]:
        check_params(params)
        if not self.regex:
            # Canned replies cannot honour a constraint; pretending to would hide a missing backend.
            reject_regex(params, "fake")
        texts = check_prompts(prompts)
        if self.delay:
            time.sleep(self.delay)
        self.calls.append(params)
        self.batches.append(texts)
        out = []
        for prompt in texts:
            self.prompts.append(prompt)
            reply = self._reply(prompt, params)
            if isinstance(reply, Generation):
                out.append(reply)
                continue
            text, _ = cut_at_stop(reply, params.stop)
            ids = self._tokenizer.encode(text)
            reason = "stop"
            if len(ids) > params.max_tokens:
                ids = ids[: params.max_tokens]
                text = self._tokenizer.decode(ids)
                reason = "length"
            out.append(Generation(text=text, token_ids=tuple(ids), finish_reason=reason))
        return out

    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[list[float]]:
        ps, cs = check_score_inputs(prompts, continuations)
        self.score_calls += 1
        result = []
        for p, c in zip(ps, cs):
            self.scored.append((p, c))
            if self.scorer is not None:
                result.append(list(self.scorer(p, c)))
                continue
            row = []
            for j, t in enumerate(self._tokenizer.encode(c)):
                h = hashlib.sha256(f"{p}\x00{j}\x00{self._tokenizer.decode([t])}".encode()).digest()
                row.append(-10.0 * int.from_bytes(h[:4], "big") / 2**32 - 1e-6)
            result.append(row)
        return result


# --------------------------------------------------------------------------- retriever


@dataclass
class FakeRetriever:
    """A ``Retriever`` over a list of passages; records every call.

    ``rank`` says how: ``"words"`` ranks by shared content words (of text and title; the count
    is the score; ties keep list order) and leaves out passages sharing none unless ``pad``
    (then they follow with score 0, so every query gets ``k``); ``"fixed"`` returns the first
    ``k`` passages as given for every query; a function ``(query, passages, k) -> ranking``
    decides itself.
    """

    passages: Sequence[Passage] = ()
    rank: Literal["words", "fixed"] | Callable[[str, Sequence[Passage], int], list[Passage]] = "words"
    pad: bool = False
    #: Every query, in order.
    queries: list[str] = field(default_factory=list)
    #: The queries of each call.
    calls: list[list[str]] = field(default_factory=list)
    #: The ``k`` of each call.
    ks: list[int] = field(default_factory=list)

    def retrieve(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        self.calls.append(list(queries))
        self.ks.append(k)
        out = []
        for q in queries:
            self.queries.append(q)
            if callable(self.rank):
                out.append(list(self.rank(q, self.passages, k)))
            elif self.rank == "fixed":
                out.append(list(self.passages[:k]))
            else:
                out.append(self._by_words(q, k))
        return out

    def _by_words(self, query: str, k: int) -> list[Passage]:
        words = set(content_words(query))
        scored = [(len(words & set(content_words(p.text + " " + p.title))), i) for i, p in enumerate(self.passages)]
        ranked = sorted((s for s in scored if s[0] > 0 or self.pad), key=lambda t: (-t[0], t[1]))[:k]
        return [self.passages[i].with_score(float(s)) for s, i in ranked]


# --------------------------------------------------------------------------- judge


@dataclass
class FakeJudge:
    """A ``SupportJudge``: ``rule(evidence, claim)`` (word containment by default); records calls.

    The default threshold 0.99 makes containment mean "every content word of the claim is in
    the evidence", which is what the hand-computed expectations of the tests assume.
    """

    rule: Callable[[str, str], float] = containment
    threshold: float = 0.99
    calls: list[list[tuple[str, str]]] = field(default_factory=list)

    def judge(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        self.calls.append(list(pairs))
        return [float(self.rule(e, c)) for e, c in pairs]

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return [p for call in self.calls for p in call]


# --------------------------------------------------------------------------- embedder


class FakeEmbedder:
    """An ``Embedder`` (``list[str] -> (n, dim)`` float matrix), deterministic and model-free.

    By default every lowercased word hashes to a signed bucket of ``dim`` and rows are
    L2-normalised (dspy's DummyVectorizer idea). With ``vocab`` a row counts the occurrences of
    each vocabulary string in the lowercased text (not normalised). With ``rule`` a row is
    ``rule(text)``. ``fail_on=n`` raises ``exc`` on call number ``n`` and every call after it
    (to interrupt an index build midway). ``calls`` counts the calls.
    """

    def __init__(
        self,
        dim: int = 64,
        *,
        vocab: Sequence[str] | None = None,
        rule: Callable[[str], Sequence[float]] | None = None,
        fail_on: int | None = None,
        exc: BaseException | None = None,
    ) -> None:
        self.vocab = tuple(vocab) if vocab is not None else None
        self.rule = rule
        self.dim = len(self.vocab) if self.vocab is not None else dim
        self.fail_on = fail_on
        self.exc = exc or RuntimeError("embedder failed")
        self.calls = 0

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        if self.fail_on is not None and self.calls >= self.fail_on:
            raise self.exc
        if self.rule is not None:
            return np.array([self.rule(t) for t in texts])
        if self.vocab is not None:
            return np.array([[t.lower().count(w) for w in self.vocab] for t in texts], dtype=np.float32)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                h = int.from_bytes(hashlib.md5(word.encode()).digest()[:8], "little")
                out[row, h % self.dim] += 1.0 if (h >> 32) & 1 else -1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)


# --------------------------------------------------------------------------- post-hoc citer


@dataclass
class FakeCiter:
    """A ``PostHocCiter``: ``picks`` is a list of ``(passage index or None, score)`` handed out
    in order per call, or a function of the sentence; records every sentence and call."""

    picks: Sequence[tuple[int | None, float]] | Callable[[str], tuple[int | None, float]] = ()
    seen: list[str] = field(default_factory=list)
    calls: list[list[str]] = field(default_factory=list)

    def best(
        self, sentences: Sequence[str], passages: Sequence[Passage], question: str = ""
    ) -> list[tuple[int | None, float]]:
        self.calls.append(list(sentences))
        self.seen.extend(sentences)
        if callable(self.picks):
            return [self.picks(s) for s in sentences]
        return list(self.picks[: len(sentences)])


# --------------------------------------------------------------------------- verifier stages


@dataclass
class FakeClaimSplitter:
    """A ``ClaimSplitter``: one claim per non-empty line, with its exact span; records texts."""

    seen: list[str] = field(default_factory=list)

    def split(self, text: str) -> list[Claim]:
        self.seen.append(text)
        out = []
        for m in re.finditer(r"[^\n]+", text):
            line = m.group()
            if line.strip():
                out.append(Claim(line, m.start(), m.end(), line.strip(), ()))
        return out


@dataclass
class FakeQuestionGenerator:
    """``QuestionGenerator`` from a dict (claim -> questions) or a function; records claims."""

    replies: dict[str, list[str]] | Callable[[str], list[str]] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)

    def questions(self, claims: Sequence[str]) -> list[list[str]]:
        self.seen.extend(claims)
        if callable(self.replies):
            return [list(self.replies(c)) for c in claims]
        return [list(self.replies.get(c, [])) for c in claims]


@dataclass
class FakeEditor:
    """``Editor`` from a function ``(claim, evidence) -> edit`` (default: no change); records calls."""

    rule: Callable[[str, Sequence[Passage]], str] = lambda claim, evidence: claim
    calls: list[tuple[str, tuple[Passage, ...]]] = field(default_factory=list)

    def edit(self, claims: Sequence[str], evidence: Sequence[Sequence[Passage]]) -> list[str]:
        out = []
        for c, ev in zip(claims, evidence):
            self.calls.append((c, tuple(ev)))
            out.append(self.rule(c, ev))
        return out
