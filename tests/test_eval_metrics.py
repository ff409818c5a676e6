"""ALCE citation recall / precision, answer correctness and RARR metrics, with hand-computed
values that pin ALCE's semantics (princeton-nlp/ALCE eval.py, compute_autoais).

The fake judge supports a claim iff every content word of it occurs in the evidence
(``fakes.containment`` = 1.0; threshold 0.99), so each expected value below can be
worked out by reading the documents.
"""

from __future__ import annotations

import random

import pytest
from fakes import FakeJudge

from eval import alce
from eval.alce import CitationInput, score_citations, score_citations_sequential
from eval.answers import answer_in_output, exact_match, normalize_answer, qampari_scores, str_em
from eval.formats import Doc, Example
from eval.scoring import EvalConfig, evaluate
from verifiers.text import preservation

THR = 0.99
BRIDGE = Doc("Bridge", "The Golden Gate Bridge opened in 1937.")
TOWER = Doc("Tower", "The Eiffel Tower stands in Paris.")
CATS = Doc("Cats", "Cats sleep most of the day.")
COLOUR = Doc("Colour", "The Golden Gate Bridge is painted orange.")
DOCS = (BRIDGE, TOWER, CATS, COLOUR)  # [1] [2] [3] [4]

OPENED = "The Golden Gate Bridge opened in 1937"
IN_PARIS = "The Eiffel Tower stands in Paris"
BOTH = "The Golden Gate Bridge opened in 1937 and is painted orange"


def one(
    output: str, docs: tuple[Doc, ...] = DOCS, at_most: int | None = 3, judge: FakeJudge | None = None
) -> alce.ExampleCitations:
    judge = judge or FakeJudge()
    [res] = score_citations([CitationInput(tuple(alce.split_output(output)), docs)], judge.judge, THR, at_most=at_most)
    assert res is not None
    return res


def sentence(output: str, **kw: object) -> alce.SentenceCitations:
    [s] = one(output, **kw).sentences  # type: ignore[arg-type]
    return s


# ---------------------------------------------------------------- ALCE's text rules


def test_joint_passage_is_title_lines_joined_by_newlines() -> None:
    assert alce.format_document(BRIDGE) == "Title: Bridge\nThe Golden Gate Bridge opened in 1937."
    assert alce.joint_passage(DOCS, [1, 0]) == (
        "Title: Tower\nThe Eiffel Tower stands in Paris.\nTitle: Bridge\nThe Golden Gate Bridge opened in 1937."
    )


def test_citation_ids_and_removal_follow_alces_regexes() -> None:
    assert alce.cited_ids("A [1][3] b [2, 4] c [10].") == [0, 2, 1, 9]  # "[2, 4]" yields only 2
    assert alce.cited_ids("[1][1].") == [0, 0]  # repeats kept
    assert alce.claim_text(f"{OPENED} [1][2].") == f"{OPENED}."
    # ALCE's remove_citations deletes " [n" and "]" only, so "[2, 1]" leaves ", 1".
    assert alce.remove_citations(f"{IN_PARIS} [2, 1].") == f"{IN_PARIS}, 1."
    assert alce.remove_citations("A [1] | B [2].") == "A B."
    assert alce.remove_citations("a ] b") == "a  b"  # every "]" goes


def test_output_cleanup_cuts_at_the_first_newline() -> None:
    assert alce.clean_output("  \nFirst [1].\nSecond [2].\n") == ("First [1].", True)
    assert alce.clean_output("Only one.<|im_end|>") == ("Only one.", False)
    assert alce.clean_output(" A [1].\nB.<|im_end|> ", first_line=False) == ("A [1].\nB.", False)


def test_sentences_are_punkt_english() -> None:
    assert alce.split_output("Dr. Smith met J. Doe in 1937 [1]. It rained [2].") == [
        "Dr. Smith met J. Doe in 1937 [1].",
        "It rained [2].",
    ]
    assert alce.split_output("") == [] and alce.split_output("   ") == []


# ---------------------------------------------------------------- recall


def test_no_citation_scores_zero_and_adds_nothing_to_precision() -> None:
    s = sentence(f"{OPENED}.")
    assert (s.status, s.recall, s.counted, s.support) == ("no_citation", 0, 0, None)
    res = one(f"{OPENED}. {IN_PARIS} [2].")
    assert res.recall == 0.5 and res.precision == 1.0  # 1 / 1: the uncited sentence is not in the denominator


def test_single_citation() -> None:
    good = sentence(f"{OPENED} [1].")
    assert (good.recall, good.precise, good.counted) == (1, 1, 1)
    bad = sentence(f"{OPENED} [3].")
    assert (bad.recall, bad.precise, bad.counted) == (0, 0, 1)
    assert one(f"{OPENED} [3].").precision == 0.0


def test_out_of_range_scores_zero_and_none_of_its_citations_count() -> None:
    s = sentence(f"{OPENED} [1][9].")
    assert (s.status, s.recall, s.counted, s.cited, s.used) == ("out_of_range", 0, 0, (1, 9), ())
    res = one(f"{OPENED} [1][9]. {IN_PARIS} [2].")
    assert res.recall == 0.5 and res.precision == 1.0  # [1] of the first sentence is not counted either
    # ALCE checks the range on every citation, before keeping the first three.
    assert sentence(f"{OPENED} [1][2][3][9].").status == "out_of_range"


def test_citation_zero_is_out_of_range() -> None:
    # ALCE would read "[0]" as index -1 (the last document); citerag treats it as out of range.
    assert sentence(f"{OPENED} [0].").status == "out_of_range"


def test_at_most_three_citations_keeps_the_first_three() -> None:
    # [3][2][4] do not support the sentence; [1], fourth, would.
    s = sentence(f"{OPENED} [3][2][4][1].")
    assert (s.cited, s.used, s.recall, s.counted, s.precise) == ((3, 2, 4, 1), (3, 2, 4), 0, 3, 0)
    # Without a limit all four are judged; each of [3], [2], [4] fails alone and the others
    # still support the sentence without it: irrelevant. [1] supports it alone.
    s = sentence(f"{OPENED} [3][2][4][1].", at_most=None)
    assert s.recall == 1 and [c.relevant for c in s.checks] == [False, False, False, True]
    assert one(f"{OPENED} [3][2][4][1].", at_most=None).precision == 0.25


def test_irrelevant_citation_among_supported_ones() -> None:
    s = sentence(f"{OPENED} [1][3].")
    assert s.recall == 1
    c1, c3 = s.checks
    assert (c1.n, c1.alone, c1.without, c1.relevant) == (1, 1.0, None, True)  # supports alone
    assert (c3.n, c3.alone, c3.without, c3.relevant) == (3, 0.0, 1.0, False)  # fails alone, [1] suffices
    assert one(f"{OPENED} [1][3].").precision == 0.5


def test_citations_needed_together_are_both_relevant() -> None:
    s = sentence(f"{BOTH} [1][4].")
    assert s.recall == 1 and [c.relevant for c in s.checks] == [True, True]  # neither suffices alone
    # Three citations: [3] fails alone and [1][4] still support the sentence without it.
    s = sentence(f"{BOTH} [1][4][3].")
    assert [c.relevant for c in s.checks] == [True, True, False]


def test_unsupported_multi_citation_sentence_counts_every_citation_as_imprecise() -> None:
    s = sentence(f"{OPENED} [2][3].")
    assert (s.recall, s.precise, s.counted) == (0, 0, 2)
    assert all(c.alone is None for c in s.checks)


def test_repeated_citations_count_twice_in_precision() -> None:
    res = one(f"{IN_PARIS} [2][2]. {OPENED} [3].")
    assert [s.counted for s in res.sentences] == [2, 1]
    assert res.precision == pytest.approx(2 / 3)


def test_per_example_averages_then_mean_over_examples_and_empty_outputs_skipped() -> None:
    judge = FakeJudge()
    inputs = [
        CitationInput(tuple(alce.split_output(f"{OPENED} [1]. {IN_PARIS} [3].")), DOCS),  # recall 1/2, precision 1/2
        CitationInput(tuple(alce.split_output(f"{OPENED} [1][3].")), DOCS),  # recall 1, precision 1/2
        CitationInput((), DOCS),  # empty output: ALCE skips it
    ]
    results = score_citations(inputs, judge.judge, THR)
    assert results[2] is None
    summary = alce.citation_summary(results)
    assert summary["n"] == 2 and summary["sentences"] == 3
    assert summary["recall"] == pytest.approx(0.75) and summary["precision"] == pytest.approx(0.5)
    assert summary["f1"] == pytest.approx(2 * 0.75 * 0.5 / 1.25)  # harmonic mean of the two file-level means
    assert summary["multi_citation"] == pytest.approx(1 / 3) and summary["overcite"] == 1.0


def test_threshold_is_inclusive() -> None:
    judge = FakeJudge(rule=lambda e, c: 0.7)
    [res] = score_citations([CitationInput(("A [1].",), DOCS)], judge.judge, 0.7)
    assert res is not None and res.recall == 1.0
    [res] = score_citations([CitationInput(("A [1].",), DOCS)], judge.judge, 0.71)
    assert res is not None and res.recall == 0.0


# ---------------------------------------------------------------- batching


def test_pairs_are_deduplicated_across_the_file_and_judged_in_rounds() -> None:
    judge = FakeJudge()
    sentences = (f"{OPENED} [1][3].", f"{BOTH} [1][4][3].")
    inputs = [CitationInput(sentences, DOCS)] * 5  # five identical examples
    results = score_citations(inputs, judge.judge, THR)
    # Round 1: the two joint passages; round 2: the single documents [1], [3], [4] for each
    # claim; round 3: the leave-one-out passages no earlier round covered ([1][4] is the
    # joint passage without [3]; "without [3]" of the first sentence is [1], already judged).
    assert [len(c) for c in judge.calls] == [2, 5, 3]
    assert len(set(judge.pairs)) == len(judge.pairs) == 10
    assert all(r is not None and r.precision == pytest.approx(3 / 5) for r in results)


def test_evaluate_shares_attribution_pairs_with_precision() -> None:
    judge = FakeJudge()
    ex = Example("a", "alce", "q", f"{OPENED} [1][3].", DOCS)
    ev = evaluate([ex, ex], judge.judge, EvalConfig(THR))
    # Round 1: 1 joint + 4 single documents (attribution); those cover precision's pairs.
    assert len(judge.calls) == 1 and len(judge.pairs) == 5 == ev.judge_pairs
    assert ev.metrics()["citation"]["precision"] == 0.5
    ev = evaluate([ex], FakeJudge().judge, EvalConfig(THR, attribution=False))
    assert ev.judge_rounds == 2 and ev.judge_pairs == 3  # joint, then [1] and [3] alone


def test_batched_scorer_matches_alces_sequential_control_flow() -> None:
    rng = random.Random(0)
    claims = [OPENED, IN_PARIS, BOTH, "Cats sleep", "The bridge is orange", "Nothing supports this"]
    inputs = []
    for _ in range(60):
        n_docs = rng.randint(0, 4)
        sents = []
        for _ in range(rng.randint(0, 4)):
            marks = "".join(f"[{rng.randint(0, 5)}]" for _ in range(rng.choice([0, 1, 1, 2, 3, 4, 5])))
            sents.append(f"{rng.choice(claims)} {marks}.")
        inputs.append(CitationInput(tuple(sents), DOCS[:n_docs]))
    for at_most in (3, 1, None):
        batched_judge, seq_judge = FakeJudge(), FakeJudge()
        batched = score_citations(inputs, batched_judge.judge, THR, at_most=at_most)
        sequential = score_citations_sequential(inputs, seq_judge.judge, THR, at_most=at_most)
        assert batched == sequential
        assert len(batched_judge.calls) <= 3 and all(len(c) == 1 for c in seq_judge.calls)
        assert set(batched_judge.pairs) == set(seq_judge.pairs)


# ---------------------------------------------------------------- evaluate(): truncation, QAMPARI


def test_output_is_cut_at_its_first_newline() -> None:
    ex = Example("a", "alce", "q", f"{IN_PARIS} [2].\n{OPENED}.", DOCS)
    [r] = evaluate([ex], FakeJudge().judge, EvalConfig(THR)).results
    assert (
        r.truncated and r.sentences == (f"{IN_PARIS} [2].",) and r.citations is not None and r.citations.recall == 1.0
    )
    [r] = evaluate([ex], FakeJudge().judge, EvalConfig(THR, truncate=False)).results
    assert not r.truncated and r.citations is not None and r.citations.recall == 0.5


def test_qampari_mode_splits_on_commas_and_prefixes_the_question() -> None:
    assert alce.split_output("Golden Gate Bridge [4], Eiffel Tower [2],.", "Which are painted?", qampari=True) == [
        "Which are painted? Golden Gate Bridge [4]",
        "Which are painted? Eiffel Tower [2]",
    ]
    assert alce.split_output("", "Q?", qampari=True) == ["Q? "]  # never empty: scores 0, not skipped
    docs = (Doc("", "Which are painted? The Golden Gate Bridge."), Doc("", "The Eiffel Tower."))
    ex = Example(
        "a",
        "alce",
        "Which are painted?",
        "Golden Gate Bridge [1], Eiffel Tower [1].",
        docs,
        answers=(("Golden Gate Bridge", "GGB"), ("Tower Bridge",)),
    )
    judge = FakeJudge()
    ev = evaluate([ex], judge.judge, EvalConfig(THR, qampari=True, attribution=False))
    assert {c for _, c in judge.pairs} == {"Which are painted? Golden Gate Bridge", "Which are painted? Eiffel Tower"}
    [r] = ev.results
    assert r.citations is not None and [s.recall for s in r.citations.sentences] == [1, 0]
    assert r.answer["qampari_precision"] == 0.5 and r.answer["qampari_recall"] == 0.5
    assert r.answer["qampari_recall_top5"] == 0.5 and r.answer["qampari_f1"] == 0.5


# ---------------------------------------------------------------- answers


def test_alce_normalisation() -> None:
    assert normalize_answer("The  Golden-Gate, Bridge!") == "goldengate bridge"
    assert normalize_answer("An apple a day") == "apple day"


def test_asqa_str_em_and_hit() -> None:
    qa = [["1937"], ["orange", "international orange"], ["Paris"]]
    assert str_em(qa, "It opened in 1937 and is International Orange.") == (pytest.approx(2 / 3), 0)
    assert str_em(qa, "1937, orange, Paris") == (1.0, 1)


def test_nq_exact_match_and_answer_in_output() -> None:
    gold = (("1937", "nineteen thirty-seven"),)
    assert exact_match(gold, "1937.") == 1 and exact_match(gold, "In 1937.") == 0
    assert answer_in_output(gold, "In 1937.") == 1 and answer_in_output(gold, "In 1938.") == 0
    assert exact_match((("The Beatles",),), "beatles") == 1


def test_answers_are_scored_without_citations_after_cleanup() -> None:
    ex = Example(
        "a", "alce", "q", "1937 [1].\nMore text.", DOCS, qa_pairs=(("1937",), ("orange",)), answers=(("1937",),)
    )
    [r] = evaluate([ex], FakeJudge().judge, EvalConfig(THR)).results
    assert r.answer == {"str_em": 0.5, "str_hit": 0, "em": 1, "answer_in_output": 1}


def test_qampari_list_scores() -> None:
    q = qampari_scores([["a1", "a2"], ["b"], ["c"]], "A2, b, zzz, .")
    assert (q.predictions, q.precision, q.recall) == (3, pytest.approx(2 / 3), pytest.approx(2 / 3))


# ---------------------------------------------------------------- RARR


def test_preservation_is_character_levenshtein() -> None:
    assert preservation("abcd", "abed") == 0.75
    assert preservation("abc", "") == 0.0 and preservation("ab", "abcdef") == 0.0


def test_rarr_attribution_preservation_and_f1() -> None:
    original = "The Golden Gate Bridge opened in 1938. Cats sleep most of the day."
    revised = "The Golden Gate Bridge opened in 1937. Cats sleep most of the day."
    ex = Example("r", "revise", "", revised, DOCS, original=original)
    ev = evaluate([ex], FakeJudge().judge, EvalConfig(THR))
    [r] = ev.results
    assert r.citations is None and r.attribution is not None
    assert [a.support for a in r.attribution.sentences] == [1.0, 1.0]
    assert [a.doc for a in r.attribution.sentences] == [1, 3]
    assert r.attribution.original is not None and r.attribution.original[0].support == pytest.approx(
        4 / 5
    )  # 1938 missing
    rarr = ev.metrics()["rarr"]
    pres = 1 - 1 / len(original)
    assert rarr["attribution"] == 1.0 and rarr["attributed"] == 1.0 and rarr["preservation"] == pytest.approx(pres)
    assert rarr["attribution_original"] == pytest.approx((4 / 5 + 1) / 2)
    assert rarr["f1"] == pytest.approx(2 * pres / (1 + pres))
    assert ev.metrics()["citation"]["n"] == 0  # a revision carries no [n] markers


def test_attribution_averages_per_text_then_over_texts() -> None:
    a = Example("a", "alce", "q", f"{OPENED}. Unsupported words.", DOCS)  # sentences 1.0 and 0.0
    b = Example("b", "alce", "q", IN_PARIS, DOCS)
    ev = evaluate([a, b], FakeJudge().judge, EvalConfig(THR))
    sup = [[s.support for s in r.attribution.sentences] for r in ev.results if r.attribution]
    assert sup == [[1.0, 0.0], [1.0]]
    rarr = ev.metrics()["rarr"]
    assert rarr["attribution"] == pytest.approx(0.75) and rarr["attributed"] == pytest.approx(0.75)


def test_emptied_revision_keeps_its_preservation() -> None:
    ex = Example("r", "revise", "", "", DOCS, original="Cats fly.")
    rarr = evaluate([ex], FakeJudge().judge, EvalConfig(THR)).metrics()["rarr"]
    assert rarr["n"] == 0 and rarr["attribution"] is None and rarr["preservation"] == 0.0 and rarr["f1"] is None


def test_extra_sections_hook() -> None:
    ev = evaluate([Example("a", "alce", "q", f"{OPENED} [1].", DOCS)], FakeJudge().judge, EvalConfig(THR))
    m = ev.metrics(extra={"agreement": lambda e: {"cited_unused": 0.0, "n": len(e.results)}, "absent": lambda e: None})
    assert m["agreement"] == {"cited_unused": 0.0, "n": 1} and "absent" not in m
    with pytest.raises(ValueError, match="citation"):
        ev.metrics(extra={"citation": lambda e: {}})
