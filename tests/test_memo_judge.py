"""verifiers.memo.MemoJudge: each distinct pair is judged once per job, with unchanged scores."""

from __future__ import annotations

from fakes import FakeJudge
from test_grounding import answer

from verifiers.grounding import Grounder
from verifiers.memo import MemoJudge
from verifiers.verify import verify_answers


def test_repeated_pairs_are_judged_once_in_first_seen_order() -> None:
    inner = FakeJudge(threshold=0.5)
    memo = MemoJudge(inner)
    a, b, c = ("the sky is blue", "sky blue"), ("grass", "sky"), ("x y", "y")
    assert memo.judge([a, b, a]) == inner.judge([a, b, a])
    inner.calls.clear()
    assert memo.judge([c, b, c, a]) == [1.0, 0.0, 1.0, 1.0]
    assert inner.calls == [[c]]  # only the new pair, once
    assert memo.judge([]) == [] and inner.calls == [[c]]
    assert memo.threshold == 0.5 and memo.remembered == 1 + 3  # the second a, then b and a


def test_capacity_forgets_the_oldest_pairs() -> None:
    inner = FakeJudge()
    memo = MemoJudge(inner, capacity=2)
    memo.judge([("a", "a"), ("b", "b"), ("c", "c")])
    inner.calls.clear()
    memo.judge([("c", "c"), ("a", "a")])
    assert inner.calls == [[("a", "a")]]


def test_verify_then_ground_judges_each_sentence_passage_pair_once() -> None:
    """The sentence x passage pairs verification judged are not sent again by grounding."""
    answers = [answer("The Golden Gate Bridge opened in 1937 [1]."), answer("Marie Curie won two Nobel Prizes [2].")]
    plain = FakeJudge(threshold=0.99)
    expected = Grounder(plain, abstain=None).ground_batch(verify_answers(answers, plain))
    inner = FakeJudge(threshold=0.99)
    memo = MemoJudge(inner)
    got = Grounder(memo, abstain=None).ground_batch(verify_answers(answers, memo))
    strip = [a.to_dict() for a in (expected + got)]
    for d in strip:
        d.pop("timings", None), d["verification"].pop("seconds")
    assert strip[:2] == strip[2:]
    assert len(plain.pairs) - len(inner.pairs) == 4  # grounding's 2 sentences x 2 passages
    assert len(set(inner.pairs)) == len(inner.pairs)
