"""Model-free stand-ins for every stage of the loop, for tests and examples."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pipeline.types import Passage

_STOP = frozenset("a an the of in on at to is was were and or by for with as it its that this".split())


def content_words(text: str) -> list[str]:
    return [w for w in re.findall(r"\w+", text.lower()) if w not in _STOP]


def containment(evidence: str, claim: str) -> float:
    """Share of the claim's content words that occur in the evidence (1.0 for no words)."""
    words = content_words(claim)
    if not words:
        return 1.0
    have = set(content_words(evidence))
    return sum(w in have for w in words) / len(words)


@dataclass
class FakeJudge:
    """A ``SupportJudge``: ``rule(evidence, claim)`` (word containment by default); records calls."""

    rule: Callable[[str, str], float] = containment
    #: High by default: with containment, only a claim whose every content word is in the evidence passes.
    threshold: float = 0.99
    calls: list[list[tuple[str, str]]] = field(default_factory=list)

    def judge(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        self.calls.append(list(pairs))
        return [float(self.rule(e, c)) for e, c in pairs]

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return [p for call in self.calls for p in call]


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


@dataclass
class KeywordRetriever:
    """A ``Retriever`` over a list of passages, ranked by shared content words; records queries."""

    passages: Sequence[Passage]
    queries: list[str] = field(default_factory=list)

    def retrieve(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        out = []
        for q in queries:
            self.queries.append(q)
            words = set(content_words(q))
            scored = [(len(words & set(content_words(p.text + " " + p.title))), i) for i, p in enumerate(self.passages)]
            ranked = sorted((s for s in scored if s[0] > 0), key=lambda t: (-t[0], t[1]))[:k]
            out.append([self.passages[i].with_score(float(s)) for s, i in ranked])
        return out
