"""Iterative In-Context RALM, plain or with speculative retrieval (RaLMSpec).

Plain: every round, each unfinished question retrieves with the last ``query_tokens`` tokens
of question + answer so far, and the generator writes ``stride`` more tokens with those
passages in its prompt (Ram et al., 2023).

Speculative (Zhang et al., 2024, "Accelerating Retrieval-Augmented Language Model Serving
with Speculation"): each question keeps a local cache of the passages retrieved for it so
far. A round's retrieval is *speculated* from that cache (the retriever ranks only the cached
passages, when it can; else the last round's passages are reused), and the generator goes on.
After ``spec_stride`` speculated rounds, the real retriever checks all of them, for every
question due, in one batched call. Where a speculated top-k differs from the real one, the
question is rolled back to that round (answer, token count and passage numbering) and
regenerated from there with the real passages. So, under greedy decoding, the output equals
the plain loop's: every prompt that survives was built from the real retriever's passages.

Checks are batched across questions: every ``spec_stride`` rounds, one real retrieval call
checks every question's pending guesses. With ``adaptive``, the stride is re-chosen after
each check by RaLMSpec's rule, from what this run measured: with per-round acceptance rate g,
round time a, check time b and real retrieval time r per round, s guessed rounds yield
g + g^2 + ... + g^s good rounds in s*a + b seconds, a real round one in a + r; the s in
[0, ``max_spec_stride``] with the most good rounds per second wins, 0 meaning "retrieve for
real" (where retrieval is cheap next to generation, a wrong guess costs more than it saves).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline.errors import InputError
from pipeline.progress import progress_bar
from pipeline.protocols import CacheRetriever, Retriever
from pipeline.types import Passage

if TYPE_CHECKING:
    from pipeline.prompting import BuiltPrompt
    from pipeline.rag import RAGPipeline
    from pipeline.types import AttributedAnswer

Key = tuple[str, int, int]


@dataclass(frozen=True)
class IterativeConfig:
    """Re-retrieve every ``stride`` tokens with the last ``query_tokens`` tokens as query.

    ``speculative``: serve retrievals from each question's cache and verify them in batches
    (output unchanged under greedy decoding); ``spec_stride``: speculated rounds per check (the
    first value when ``adaptive``, at most ``max_spec_stride``); ``prefetch``: extra passages
    retrieved in each question's first round to fill its cache, where the retriever is
    ``prefix_stable`` (its top-k is the head of its top-(k + prefetch), as BM25's is)."""

    stride: int = 32
    query_tokens: int = 32
    speculative: bool = False
    spec_stride: int = 3
    adaptive: bool = True
    max_spec_stride: int = 8
    prefetch: int = 20

    def __post_init__(self) -> None:
        if self.stride < 1 or self.query_tokens < 1:
            raise InputError("--stride and --query-tokens must be positive integers")
        if not 1 <= self.spec_stride <= self.max_spec_stride:
            raise InputError(f"--spec-stride must be between 1 and {self.max_spec_stride} (got {self.spec_stride})")
        if self.prefetch < 0:
            raise InputError(f"--prefetch must be 0 or more (got {self.prefetch})")


@dataclass
class _Step:
    """A speculated round: its query, passages, and the state to roll back to."""

    query: str
    passages: list[Passage]
    answer: str
    used: int
    reg_len: int
    #: registry length once the round's prompt is built (-1 until then)
    reg_after: int = -1


@dataclass
class _Question:
    question: str
    answer: str = ""
    used: int = 0
    done: bool = False
    truncated: bool = False
    #: number n -> registry[n - 1], as shown
    registry: list[Passage] = field(default_factory=list)
    #: retrieved span -> its number (keyed by the span retrieved, not the shown one: a truncated
    #: passage is shown with a shorter span, and keying by that gave it a new number every round)
    numbered: dict[Key, int] = field(default_factory=dict)
    cache: dict[Key, Passage] = field(default_factory=dict)
    pending: list[_Step] = field(default_factory=list)
    #: the real passages of a query, known after a rollback to it
    known: tuple[str, list[Passage]] | None = None
    last: list[Passage] = field(default_factory=list)

    def remember(self, passages: Sequence[Passage]) -> None:
        for p in passages:
            self.cache.setdefault(p.key, p)

    def take_known(self, query: str) -> list[Passage] | None:
        """The real passages of ``query`` if a rollback left them (used once), else None."""
        known, self.known = self.known, None
        return known[1] if known is not None and known[0] == query else None

    def rollback(self, step: _Step, real: list[Passage]) -> None:
        self.answer, self.used = step.answer, step.used
        del self.registry[step.reg_len :]
        self.numbered = {k: n for k, n in self.numbered.items() if n <= step.reg_len}
        self.done = self.truncated = False
        self.pending.clear()
        self.known = (step.query, real)


@dataclass
class SpeculationStats:
    rounds: int = 0
    retrieve_calls: int = 0
    retrieved_queries: int = 0
    speculated: int = 0
    accepted: int = 0
    rollbacks: int = 0
    wasted_rounds: int = 0
    #: rounds retrieved for real because the scheduler found speculation would not pay
    plain_rounds: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def ask_iterative(pipe: RAGPipeline, qs: list[str], progress: bool) -> list[AttributedAnswer]:
    """Answer ``qs`` with ``pipe.iterative`` (plain or speculative, see the module docstring)."""
    cfg = pipe.iterative
    assert cfg is not None
    tok = pipe.generator.tokenizer
    t0 = time.perf_counter()
    states = [_Question(q) for q in qs]
    stats = SpeculationStats()
    stride = _Stride(cfg)

    def query_of(s: _Question) -> str:
        if not s.answer:
            return s.question
        ids = tok.encode(f"{s.question} {s.answer}".strip())
        return tok.decode(ids[-cfg.query_tokens :])

    def retrieve(queries: list[str], k: int) -> list[list[Passage]]:
        stats.retrieve_calls += 1
        stats.retrieved_queries += len(queries)
        t = time.perf_counter()
        try:
            return pipe.retriever.retrieve(queries, k)
        finally:
            stride.retrieval_s += time.perf_counter() - t

    def ready(s: _Question) -> bool:
        return s.done and not s.pending

    params = pipe._generation_params(min(cfg.stride, pipe.params.max_tokens))
    finished = 0
    with progress_bar(total=len(qs), desc="answering (iterative)", enabled=progress, unit="q") as bar:
        while not all(ready(s) for s in states):
            active = [s for s in states if not s.done]
            if not active:  # only unchecked guesses are left
                _verify(states, pipe.k, retrieve, stats, stride)
                continue
            t_round, ret_before = time.perf_counter(), stride.retrieval_s
            queries = [query_of(s) for s in active]
            if cfg.speculative and stride.value:
                passages = _speculate(pipe.retriever, active, queries, pipe.k, cfg.prefetch, retrieve, stats)
            elif cfg.speculative:  # speculation does not pay now: real retrieval, cache kept
                passages = _real(active, queries, pipe.k, retrieve)
                stats.plain_rounds += 1
            else:
                passages = retrieve(queries, pipe.k)
            real_s = stride.retrieval_s - ret_before
            prompts: list[BuiltPrompt] = []
            for s, ps in zip(active, passages):
                step = s.pending[-1] if s.pending and s.pending[-1].reg_after < 0 else None
                prompts.append(pipe._iterative_prompt(s.question, ps, s.registry, s.numbered, s.answer))
                if step is not None:
                    step.reg_after = len(s.registry)
                s.last = ps
            gens = pipe.generator.generate([p.text for p in prompts], params)
            for s, g in zip(active, gens):
                s.answer += g.text
                s.used += len(g.token_ids) if g.token_ids else len(tok.encode(g.text))
                if g.finish_reason != "length" or s.used >= pipe.params.max_tokens or not g.text:
                    s.done, s.truncated = True, g.finish_reason == "length"
            stats.rounds += 1
            stride.rounds(time.perf_counter() - t_round - real_s, real_s)
            if cfg.speculative and stride.due():
                _verify(states, pipe.k, retrieve, stats, stride)
            now = sum(ready(s) for s in states)
            bar.update(now - finished)
            finished = now
    t1 = time.perf_counter()
    report: dict[str, Any] = {"rounds": stats.rounds}
    if cfg.speculative:
        report["speculation"] = stats.as_dict()
    out = [
        pipe._finish(s.question, s.answer, s.registry, truncated=s.truncated, generated_tokens=s.used, **report)
        for s in states
    ]
    timings = {"total_s": time.perf_counter() - t0, "generate_s": t1 - t0, "batch_size": len(qs)}
    return [a.with_report(timings=timings) for a in out]


def _speculate(
    retriever: Retriever,
    active: list[_Question],
    queries: list[str],
    k: int,
    prefetch: int,
    retrieve: Callable[[list[str], int], list[list[Passage]]],
    stats: SpeculationStats,
) -> list[list[Passage]]:
    """This round's passages: known real ones after a rollback, real ones on a first round
    (with ``prefetch`` more into the cache), else speculated from the question's cache."""
    out: list[list[Passage] | None] = [None] * len(active)
    first = [i for i, s in enumerate(active) if not s.cache and s.known is None]
    if first:
        fq = [queries[i] for i in first]
        # Prefetch rides on the first retrieval only where the retriever's top-k is always the
        # head of its top-(k + prefetch); elsewhere it would cost a second full retrieval per
        # question, which is what speculation is meant to save, so the cache starts with k.
        extra = prefetch if getattr(retriever, "prefix_stable", False) else 0
        for i, ps in zip(first, retrieve(fq, k + extra)):
            out[i] = ps[:k]
            active[i].remember(ps)
    spec: list[int] = []
    for i, s in enumerate(active):
        if out[i] is not None:
            continue
        out[i] = s.take_known(queries[i])
        if out[i] is None:
            spec.append(i)
    if spec:
        guesses = _from_cache(retriever, [active[i] for i in spec], [queries[i] for i in spec], k)
        for i, ps in zip(spec, guesses):
            s = active[i]
            s.pending.append(_Step(queries[i], ps, s.answer, s.used, len(s.registry)))
            out[i] = ps
        stats.speculated += len(spec)
    return [ps if ps is not None else [] for ps in out]


def _real(
    active: list[_Question], queries: list[str], k: int, retrieve: Callable[[list[str], int], list[list[Passage]]]
) -> list[list[Passage]]:
    """Real passages for every question (known ones after a rollback are not fetched again)."""
    out = [s.take_known(q) for s, q in zip(active, queries)]
    todo = [i for i, ps in enumerate(out) if ps is None]
    for i, ps in zip(todo, retrieve([queries[i] for i in todo], k) if todo else []):
        out[i] = ps
    for s, ps in zip(active, out):
        s.remember(ps or [])
    return [ps or [] for ps in out]


def _from_cache(retriever: Retriever, states: list[_Question], queries: list[str], k: int) -> list[list[Passage]]:
    """The retriever's ranking of each question's cached passages, else its last passages."""
    if isinstance(retriever, CacheRetriever):
        return retriever.retrieve_from(queries, [list(s.cache.values()) for s in states], k)
    return [list(s.last) for s in states]


def _verify(
    states: list[_Question],
    k: int,
    retrieve: Callable[[list[str], int], list[list[Passage]]],
    stats: SpeculationStats,
    stride: _Stride,
) -> None:
    """Check every pending guess with one real retrieval; roll back at each question's first miss."""
    t0 = time.perf_counter()
    due = [s for s in states if s.pending]
    steps = [(s, st) for s in due for st in s.pending]
    real = retrieve([st.query for _, st in steps], k) if steps else []
    missed: set[int] = set()
    accepted = 0
    for (s, st), ps in zip(steps, real):
        if id(s) in missed:
            continue
        s.remember(ps)
        if [p.key for p in ps] == [p.key for p in st.passages]:
            accepted += 1
            # The registry holds the speculated copies: give them the real scores.
            scores = {p.key: p.score for p in ps}
            for key, n in s.numbered.items():
                if st.reg_len < n <= st.reg_after and key in scores:
                    s.registry[n - 1] = s.registry[n - 1].with_score(scores[key])
            continue
        stats.rollbacks += 1
        stats.wasted_rounds += len(s.pending) - s.pending.index(st)
        s.rollback(st, ps)
        missed.add(id(s))
    for s in due:
        s.pending.clear()
    stats.accepted += accepted
    stride.checked(accepted, accepted + len(missed), time.perf_counter() - t0)


class _Stride:
    """When to check: every ``value`` rounds (0: do not speculate, retrieve for real), re-chosen
    from this run's measurements after every check and plain round when adaptive."""

    def __init__(self, cfg: IterativeConfig) -> None:
        self.cfg, self.value, self.since = cfg, cfg.spec_stride, 0
        #: seconds in real retrieval calls (kept by the caller)
        self.retrieval_s = 0.0
        self.gen_s = self.check_s = self.real_s = 0.0
        self.n_rounds = self.n_checks = self.n_real = self.good = self.tried = 0

    def rounds(self, seconds: float, real_s: float) -> None:
        """A round took ``seconds`` besides ``real_s`` in real retrieval (0 when speculated)."""
        self.gen_s, self.n_rounds, self.since = self.gen_s + seconds, self.n_rounds + 1, self.since + 1
        if real_s:
            self.real_s, self.n_real = self.real_s + real_s, self.n_real + 1
        if self.value == 0:
            self._choose()

    def due(self) -> bool:
        return self.value > 0 and self.since >= self.value

    def checked(self, good: int, tried: int, seconds: float) -> None:
        self.check_s, self.n_checks, self.since = self.check_s + seconds, self.n_checks + 1, 0
        self.good, self.tried = self.good + good, self.tried + tried
        self._choose()

    def _choose(self) -> None:
        if self.cfg.adaptive and self.tried and self.n_rounds and self.n_real and self.n_checks:
            self.value = best_stride(
                self.good / self.tried,
                self.gen_s / self.n_rounds,
                self.real_s / self.n_real,
                self.check_s / self.n_checks,
                self.cfg.max_spec_stride,
            )


def best_stride(accept: float, round_s: float, retrieve_s: float, check_s: float, most: int) -> int:
    """The speculation stride with the most expected good rounds per second (RaLMSpec's
    scheduler, plus 0 for "retrieve for real"): a real round gives one good round in
    ``round_s + retrieve_s``; s guessed rounds, the i-th good with probability ``accept``**i
    (every guess up to it right), take s * ``round_s`` + ``check_s``."""
    g = min(max(accept, 0.0), 1.0)

    def rate(s: int) -> float:
        if s == 0:
            return 1.0 / (round_s + retrieve_s + 1e-12)
        return sum(g**i for i in range(1, s + 1)) / (s * round_s + check_s + 1e-12)

    return max(range(most + 1), key=lambda s: (rate(s), -s))
