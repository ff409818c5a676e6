"""Results of attribution: per-source scores, the gradient methods' token matrix, and the
report that bundles them for one answer (JSON via ``to_dict``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eval.saliency.context import AnswerToken, AttributionContext, Source, TextToken

#: Scores of shape (n_answer_sentences, n_sources).
ScoreMatrix = np.ndarray


@dataclass(frozen=True)
class Attribution:
    """``scores[j, i]``: how much source ``i`` raised the log-probability of answer sentence
    ``j`` (nats; larger means more important). Rows of unscorable sentences are NaN.

    ``intercept`` (ContextCite only) is the surrogate's prediction with every source removed;
    ``info`` holds method details (masks, full-prompt log-probs, convergence deltas).
    """

    method: str
    level: str
    sources: tuple[Source, ...]
    scores: ScoreMatrix
    intercept: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def ranking(self, sentence: int) -> list[int]:
        """Source indices for 0-based answer ``sentence``, most important first (empty if unscorable)."""
        row = self.scores[sentence]
        if np.isnan(row).all():
            return []
        return [int(i) for i in np.argsort(-np.nan_to_num(row, nan=-np.inf), kind="stable")]

    def top(self, sentence: int, k: int) -> list[Source]:
        """The ``k`` most important sources for 0-based answer ``sentence``."""
        return [self.sources[i] for i in self.ranking(sentence)[:k]]

    def predict(self, keep: np.ndarray) -> np.ndarray:
        """Linear prediction (n_masks, n_sentences) of each sentence's score under keep-masks:
        the sum of the kept sources' scores (plus the intercept when there is one)."""
        pred = keep.astype(float) @ self.scores.T
        return pred + self.intercept if self.intercept is not None else pred

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"method": self.method, "level": self.level, "scores": _floats(self.scores)}
        if self.intercept is not None:
            d["intercept"] = _floats(self.intercept)
        if self.info:
            d["info"] = _jsonable(self.info)
        return d


@dataclass(frozen=True)
class EvidenceToken(TextToken):
    """A prompt token inside a passage: ``start``/``end`` index the passage text as shown."""

    passage: int = 0
    #: 1-based sentence of the passage holding the token (0 between sentences).
    sentence: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "passage": self.passage,
            "sentence": self.sentence,
            "start": self.start,
            "end": self.end,
        }


@dataclass(frozen=True)
class TokenSaliency:
    """A gradient method's scores: ``matrix[a, e]`` is the attribution of answer token ``a``'s
    log-probability to evidence token ``e`` (summed over embedding dimensions)."""

    method: str
    answer_tokens: tuple[AnswerToken, ...]
    evidence_tokens: tuple[EvidenceToken, ...]
    matrix: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {
            "answer_tokens": [t.to_dict() for t in self.answer_tokens],
            "evidence_tokens": [t.to_dict() for t in self.evidence_tokens],
            "matrix": _floats(self.matrix),
        }


@dataclass(frozen=True)
class SaliencyReport:
    """Every method's attribution for one answer at one level, with optional faithfulness."""

    context: AttributionContext
    level: str
    attributions: dict[str, Attribution]
    tokens: dict[str, TokenSaliency] = field(default_factory=dict)
    #: Method name -> :class:`eval.faithfulness.Faithfulness`, when checked.
    faithfulness: dict[str, Any] = field(default_factory=dict)

    @property
    def sources(self) -> tuple[Source, ...]:
        return self.context.sources(self.level)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        ctx = self.context
        d: dict[str, Any] = {
            "question": ctx.question,
            "answer": ctx.answer,
            "level": self.level,
            "sentences": [
                {
                    "index": j + 1,
                    "text": s.text,
                    "start": s.start,
                    "end": s.end,
                    "citations": list(s.citations),
                    "post_hoc": s.post_hoc,
                }
                for j, s in enumerate(ctx.sentences)
            ],
            "passages": [{"n": n, **p.to_dict(span=False, score=False)} for n, p in enumerate(ctx.passages, start=1)],
            "sources": [s.to_dict() for s in self.sources],
            "methods": {},
        }
        for name, att in self.attributions.items():
            entry = att.to_dict()
            if name in self.tokens:
                entry["tokens"] = self.tokens[name].to_dict()
            d["methods"][name] = entry
        if self.faithfulness:
            d["faithfulness"] = {name: f.to_dict() for name, f in self.faithfulness.items()}
        return d


def _floats(a: np.ndarray) -> Any:
    """Nested lists of floats rounded to 6 significant digits, NaN as None."""
    if a.ndim == 0:
        v = float(a)
        return None if math.isnan(v) else float(f"{v:.6g}")
    return [_floats(x) for x in a]


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return _floats(v.astype(float))
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (float, np.floating)):
        return None if math.isnan(float(v)) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    return v
