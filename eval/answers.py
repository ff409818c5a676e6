"""Answer correctness, with ALCE's string normalisation.

* ASQA ``str_em``: the share of disambiguated questions (``qa_pairs``) any of whose short
  answers occurs in the output; ``str_hit``: 1 when all do (ALCE's ``compute_str_em``).
* NQ-style ``em``: the normalised output equals a normalised gold answer; ``answer_in_output``:
  a normalised gold answer occurs in the normalised output (the "accuracy" of In-Context RALM
  and Self-RAG on NQ-open).
* QAMPARI (``--qampari``): ALCE's ``compute_qampari_f1`` without its chain-of-thought option:
  the output split on commas into predictions; precision = predictions that equal a gold
  alias, recall = gold answers with an alias among the predictions, recall capped at 5
  (``rec_top5``), and the F1 of each per example.

ALCE scores answers on the output after its clean-up and with citations removed; the
caller passes that text.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass

from eval.alce import f1

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """SQuAD / ALCE normalisation: lower case, punctuation removed, then the articles a / an /
    the removed, then whitespace collapsed."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_presence(answers: Sequence[str], context: str) -> bool:
    """Whether any normalised answer is a substring of the normalised context (an empty
    answer always is, as in ALCE)."""
    haystack = normalize_answer(context)
    return any(normalize_answer(a) in haystack for a in answers)


def str_em(qa_pairs: Sequence[Sequence[str]], output: str) -> tuple[float, int]:
    """ASQA (str_em, str_hit) of one output."""
    found = [exact_presence(short, output) for short in qa_pairs]
    em = sum(found) / len(found)
    return em, int(em == 1)


def exact_match(answers: Sequence[Sequence[str]], output: str) -> int:
    """1 when the normalised output equals any alias of any gold answer."""
    pred = normalize_answer(output)
    return int(any(normalize_answer(a) == pred for aliases in answers for a in aliases))


def answer_in_output(answers: Sequence[Sequence[str]], output: str) -> int:
    """1 when any alias of any gold answer occurs in the output (normalised)."""
    return int(exact_presence([a for aliases in answers for a in aliases], output))


@dataclass(frozen=True)
class QampariScores:
    precision: float
    recall: float
    recall_top5: float
    f1: float
    f1_top5: float
    predictions: int


def qampari_scores(answers: Sequence[Sequence[str]], output: str) -> QampariScores:
    """ALCE's QAMPARI list scores of one output (``answers``: alias lists, one per answer)."""
    preds = [normalize_answer(x.strip()) for x in output.rstrip().rstrip(".").rstrip(",").split(",")]
    preds = [p for p in preds if p]
    gold = [[normalize_answer(a) for a in aliases] for aliases in answers]
    flat = {a for aliases in gold for a in aliases}
    precision = sum(p in flat for p in preds) / len(preds) if preds else 0.0
    hits = sum(any(a in preds for a in aliases) for aliases in gold)
    recall = hits / len(gold) if gold else 0.0
    recall_top5 = min(5, hits) / min(5, len(gold)) if gold else 0.0
    return QampariScores(precision, recall, recall_top5, f1(precision, recall), f1(precision, recall_top5), len(preds))
