"""verifiers.grounding: per-citation support, quotes, abstention (fake judge, then the real one)."""

from __future__ import annotations

import pytest
from fakes import FakeEmbedder, FakeGenerator, FakeJudge, FakeTokenizer

from pipeline.citations import cite_answer
from pipeline.types import AttributedAnswer, Passage
from verifiers.grounding import ABSTAIN_TEXT, AbstainRule, Grounder, candidate_spans

DOC = "The bridge is in San Francisco. The Golden Gate Bridge opened in 1937. It is orange."
BRIDGE = Passage("bridge.md", DOC, "Golden Gate Bridge", 1.0, 100, 100 + len(DOC))
CURIE = Passage("curie.md", "Marie Curie won two Nobel Prizes.", "Curie", 0.5, 0, 33)


def answer(
    text: str, passages: tuple[Passage, ...] = (BRIDGE, CURIE), question: str = "When did the bridge open?"
) -> AttributedAnswer:
    parsed = cite_answer(text, passages)
    return AttributedAnswer(question, text, parsed.sentences, passages, {})


def test_candidate_spans_are_sentences_and_adjacent_pairs_shortest_first() -> None:
    spans = candidate_spans(DOC)
    assert spans[0] == (71, 84) and DOC[71:84] == "It is orange."
    assert DOC[32:70] == "The Golden Gate Bridge opened in 1937."
    assert set(spans) == {(0, 31), (32, 70), (71, 84), (0, 70), (32, 84)}
    assert [b - a for a, b in spans] == sorted(b - a for a, b in spans)
    assert candidate_spans("One sentence only.") == []


def test_quote_is_the_smallest_supporting_span_in_document_offsets() -> None:
    judge = FakeJudge(threshold=0.99)
    g = Grounder(judge, abstain=None)
    a = g.ground(answer("The Golden Gate Bridge opened in 1937 [1]."))
    s = a.sentences[0]
    assert s.support == 1.0
    (q,) = s.quotes
    assert q.n == 1 and q.text == "The Golden Gate Bridge opened in 1937."
    assert DOC[q.start - 100 : q.end - 100] == q.text  # document offsets: passage start + local
    assert a.report["abstained"] is False


def test_unsupportive_citation_gets_no_quote_and_zero_support() -> None:
    g = Grounder(FakeJudge(threshold=0.99), abstain=None)
    s = g.ground(answer("The Golden Gate Bridge opened in 1937 [2]."))
    assert s.sentences[0].support < 0.99 and s.sentences[0].quotes == ()


def test_abstains_when_no_passage_supports_any_sentence_and_keeps_the_draft() -> None:
    g = Grounder(FakeJudge(threshold=0.99), abstain=AbstainRule(min_support=None))  # None: the judge's threshold
    a = g.ground(answer("The bridge was designed by Gustave Eiffel [1]."))
    assert a.text == ABSTAIN_TEXT and a.report["abstained"] is True
    assert a.report["draft"]["answer"] == "The bridge was designed by Gustave Eiffel [1]."
    assert a.sentences[0].citations == () and a.passages == (BRIDGE, CURIE)
    assert any("supports" in r for r in a.report["abstention"]["reasons"])
    # Switched off, the same answer stands.
    kept = Grounder(FakeJudge(threshold=0.99), abstain=None).ground(
        answer("The bridge was designed by Gustave Eiffel [1].")
    )
    assert kept.text.startswith("The bridge was designed") and kept.report["abstained"] is False


def test_default_rule_abstains_only_when_nothing_supports_at_all() -> None:
    judge = FakeJudge(threshold=0.99)
    # "bridge" is a quarter of the content words: below the judge's threshold, above 0.05.
    weak = Grounder(judge, abstain=AbstainRule()).ground(answer("The bridge was designed by Gustave Eiffel [1]."))
    assert weak.report["abstained"] is False and weak.report["abstention"]["min_support"] == 0.05
    none = Grounder(judge, abstain=AbstainRule()).ground(answer("Zebras graze quietly [1]."))
    assert none.report["abstained"] is True


def test_abstains_when_retrieval_found_nothing_relevant() -> None:
    # question -> e0, passages -> e1: cosine 0 for every passage.
    embed = FakeEmbedder(rule=lambda t: [1.0, 0.0] if t.startswith("When") else [0.0, 1.0])

    g = Grounder(FakeJudge(threshold=0.99), embed=embed, abstain=AbstainRule(min_relevance=0.3))
    a = g.ground(answer("The Golden Gate Bridge opened in 1937 [1]."))
    assert a.report["abstained"] is True
    assert a.report["abstention"]["relevance"] == 0.0
    # Relevant passages and a supported answer: no abstention.
    same = FakeEmbedder(rule=lambda t: [1.0, 1.0])
    ok = Grounder(FakeJudge(threshold=0.99), embed=same, abstain=AbstainRule(min_relevance=0.3)).ground(
        answer("The Golden Gate Bridge opened in 1937 [1].")
    )
    assert ok.report["abstained"] is False and ok.report["abstention"]["relevance"] == pytest.approx(1.0)


def test_all_pairs_of_all_answers_go_to_the_judge_in_two_calls() -> None:
    judge = FakeJudge(threshold=0.99)
    Grounder(judge, abstain=None).ground_batch(
        [answer("The Golden Gate Bridge opened in 1937 [1]."), answer("Marie Curie won two Nobel Prizes [2].")]
    )
    assert len(judge.calls) == 2  # one for sentences x passages, one for quote candidates
    assert len(judge.calls[0]) == 4


def test_real_default_judge_quotes_the_year_sentence() -> None:
    from verifiers.judges import load_judge

    g = Grounder(load_judge("default"), abstain=AbstainRule(min_relevance=-1.0, min_support=None))
    a = g.ground(answer("The Golden Gate Bridge opened in 1937 [1]."))
    assert a.report["abstained"] is False
    (q,) = a.sentences[0].quotes
    assert "1937" in q.text and len(q.text) < len(DOC)
    wrong = g.ground(answer("The Golden Gate Bridge opened in 1990 [1]."))
    assert wrong.report["abstained"] is True and wrong.report["draft"]["answer"].endswith("1990 [1].")


def _scores_copied_words(prompt: str, continuation: str) -> list[float]:
    """Scores a word -0.1 when the prompt contains it, else -5.0 (word tokens): removing the
    passage a sentence copied costs it 4.9 nats a word; other passages cost nothing."""
    words = set(prompt.lower().replace(".", " ").split())
    return [-0.1 if w.lower().strip(".") in words else -5.0 for w in continuation.split()]


def _use_generator() -> FakeGenerator:
    return FakeGenerator(tokenizer=FakeTokenizer(words=True), scorer=_scores_copied_words)


def test_use_aware_cites_the_supportive_passage_the_sentence_used() -> None:
    from verifiers.grounding import PassageUse

    copy = Passage("copy.md", "The Golden Gate Bridge opened in 1937.", "Copy", 0.9, 0, 38)
    # `copy` and BRIDGE both hold every word of the sentence, so removing either one alone
    # costs nothing: no passage is "used" and the first of the equally supportive ones is cited.
    a = answer("The Golden Gate Bridge opened in 1937 [2].", passages=(copy, BRIDGE, CURIE))
    g = Grounder(FakeJudge(threshold=0.99), abstain=None, quotes=False, use=PassageUse(_use_generator()))
    out = g.ground(a)
    assert out.sentences[0].citations == (1,) and out.report["citation_mode"] == "use-aware"
    # With a single supportive passage that the sentence used, that passage is cited.
    b = answer("Marie Curie won two Nobel Prizes [1].", passages=(BRIDGE, CURIE))
    s = g.ground(b).sentences[0]
    assert s.citations == (2,) and s.post_hoc and s.text == "Marie Curie won two Nobel Prizes [2]."
    drops = PassageUse(_use_generator()).drops([b])
    # Without CURIE, "Marie", "Curie", "won", "two", "Nobel", "Prizes" each cost 4.9 nats.
    assert drops[(0, 0)][0] == 0.0 and drops[(0, 0)][1] == pytest.approx(6 * 4.9)
