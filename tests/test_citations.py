"""Citation parsing: sentence spans, marker forms, out-of-range numbers, post-hoc citing."""

from __future__ import annotations

from fakes import FakeCiter, FakeEmbedder
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.citations import cite_answer, parse_markers, sentence_spans, strip_markers
from pipeline.types import Passage

SHOWN = tuple(Passage(doc_id=f"d{i}", text=f"passage {i}", start=0, end=9) for i in range(1, 4))


def texts(text: str) -> list[str]:
    return [text[s:e] for s, e in sentence_spans(text)]


def test_marker_forms() -> None:
    assert parse_markers("a [1] b") == [1]
    assert parse_markers("a [1][2] b") == [1, 2]
    assert parse_markers("a [1, 2] and [3;1]") == [1, 2, 3]
    assert parse_markers("no markers [x] [] (1)") == []


def test_the_citation_forms_people_write() -> None:
    # Ranges, with a hyphen, an en dash or an em dash, alone or among other items.
    assert parse_markers("a [1-3] b") == [1, 2, 3]
    assert parse_markers("a [2\u20134] b [1, 5 - 6]") == [2, 3, 4, 1, 5, 6]
    # Named forms, any case, singular or plural.
    assert parse_markers("a [Doc 2] b [document 3] c [Source 1; Passage 4] d [Docs 5, 6] e [Ref. 7]") == [
        2,
        3,
        1,
        4,
        5,
        6,
        7,
    ]
    # The dagger form, with or without a locator after it, in square or lenticular brackets.
    assert parse_markers("a [2\u2020] b [3\u2020source] c \u30104\u2020L3-L9\u3011") == [2, 3, 4]
    # All of them are markers: they come off the text and keep their sentence's end.
    assert strip_markers("Paris is the capital [Doc 1][2-3]. It is old \u30104\u2020source\u3011.") == (
        "Paris is the capital. It is old."
    )
    assert texts("It opened in 1937. [1-2] It is orange [Doc 3].") == [
        "It opened in 1937. [1-2]",
        "It is orange [Doc 3].",
    ]


def test_unclear_ranges_read_as_their_ends() -> None:
    # Reversed, or wider than MAX_RANGE passages: not expanded (a pair of years is not 2 passages).
    assert parse_markers("q [3-1]") == [3, 1]
    assert parse_markers("in [2019-2020]") == [2019, 2020]
    assert parse_markers("r [1-40]") == [1, 40]
    # Words that only look like a name, and names without a number, are not markers.
    assert parse_markers("see [Doc] [a 2] [Docket 2] [2 Doc]") == []


def test_ranges_resolve_against_shown_passages_and_report_the_rest() -> None:
    shown = [Passage(f"d{i}", f"text {i}") for i in range(1, 4)]
    parsed = cite_answer("Bridges are long [2-5]. Fog [Doc 1].", shown)
    assert [s.citations for s in parsed.sentences] == [(2, 3), (1,)]
    assert parsed.dropped == (4, 5)


def test_answers_report_their_cited_and_uncited_shown_passages() -> None:
    from pipeline.types import AttributedAnswer, Sentence

    shown = tuple(Passage(f"d{i}", f"text {i}") for i in range(1, 6))
    sents = (Sentence("A [1-2].", 0, 8, (1, 2)), Sentence("B [Doc 4].", 9, 19, (4,)))
    # Passage 5 is verifier evidence, never shown to the generator: neither cited nor uncited.
    answer = AttributedAnswer("q", "A [1-2]. B [Doc 4].", sents, shown, n_shown=4)
    d = answer.to_dict()
    assert d["cited_passages"] == [1, 2, 4]
    assert d["uncited_passages"] == [3]
    assert [p["cited"] for p in d["passages"]] == [True, True, False, True, False]


def test_markers_after_full_stop_stay_with_their_sentence() -> None:
    text = "The bridge opened in 1937. [1] It is orange.[2][3] Fog is common [1, 3]."
    assert texts(text) == ["The bridge opened in 1937. [1]", "It is orange.[2][3]", "Fog is common [1, 3]."]


def test_markers_on_next_line_attach_to_previous_sentence() -> None:
    text = "Paris is the capital.\n[2] Lyon is smaller."
    assert texts(text) == ["Paris is the capital.\n[2]", "Lyon is smaller."]


def test_abbreviations_and_initials_do_not_split() -> None:
    text = "Dr. Curie worked with J. Strauss in the U.S. in 1900. It went well."
    assert texts(text) == ["Dr. Curie worked with J. Strauss in the U.S. in 1900.", "It went well."]


def test_decimals_and_question_marks() -> None:
    assert texts("It is 3.5 km long? Yes! Done") == ["It is 3.5 km long?", "Yes!", "Done"]


def test_out_of_range_numbers_are_dropped_and_reported() -> None:
    parsed = cite_answer("A claim [1][7]. Another [0].", SHOWN)
    assert [s.citations for s in parsed.sentences] == [(1,), ()]
    assert parsed.dropped == (7, 0)
    assert parsed.sentences[0].dropped == (7,)


def test_post_hoc_only_for_uncited_sentences() -> None:
    citer = FakeCiter([(2, 0.8), (None, 0.1)])
    parsed = cite_answer("Cited [1]. Uncited one. Uncited two.", SHOWN, citer)
    s = parsed.sentences
    assert s[0].citations == (1,) and not s[0].post_hoc
    assert s[1].citations == (3,) and s[1].post_hoc and s[1].support == 0.8
    assert s[2].citations == () and not s[2].post_hoc
    assert citer.seen == ["Uncited one.", "Uncited two."]
    assert parsed.post_hoc_count == 1


def test_strip_markers() -> None:
    assert strip_markers("Paris is big [1][2]. Yes [3] .") == "Paris is big. Yes."


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(alphabet="abc XY.!?\n,", min_size=0, max_size=12),
            st.integers(min_value=-3, max_value=12).map(lambda n: f"[{n}]"),
            st.lists(st.integers(0, 12), min_size=1, max_size=3).map(lambda ns: "[" + ", ".join(map(str, ns)) + "]"),
        ),
        max_size=12,
    ),
    st.integers(min_value=0, max_value=5),
)
def test_citations_never_point_outside_shown_passages(parts: list[str], n_shown: int) -> None:
    text = "".join(parts)
    shown = SHOWN[:n_shown] if n_shown <= 3 else SHOWN + SHOWN[: n_shown - 3]
    parsed = cite_answer(text, shown, FakeCiter([(0, 1.0)] * 50) if shown else None)
    for s in parsed.sentences:
        assert text[s.start : s.end] == s.text
        for n in s.citations:
            assert 1 <= n <= len(shown)
    # Every written number is either kept or reported as dropped.
    for s in parsed.sentences:
        if not s.post_hoc:
            assert sorted(set(s.citations) | set(s.dropped)) == sorted(parse_markers(s.text))


#: A deterministic embedder: counts of a fixed vocabulary.
BAG_OF_WORDS = ("bridge", "opened", "1937", "curie", "nobel", "prize", "everest", "climbed", "when", "who")


def test_embedding_citer_reads_the_sentence_in_the_question_context() -> None:
    from pipeline.citations import EmbeddingPostHocCiter

    passages = [
        Passage("curie", "Curie won the Nobel prize."),
        Passage("bridge", "The bridge opened in 1937."),
        Passage("everest", "Everest was climbed."),
    ]
    citer = EmbeddingPostHocCiter(FakeEmbedder(vocab=BAG_OF_WORDS), min_similarity=0.3)
    # "In 1937." alone matches the bridge passage; with the question it still does.
    assert citer.best(["In 1937."], passages, "When was the bridge opened?")[0][0] == 1
    # A bare name says nothing; the question decides.
    pick, score = citer.best(["Yes."], passages, "Who won the Nobel prize?")[0]
    assert pick == 0 and score > 0.3
    # Nothing similar enough: no citation rather than a wrong one.
    assert citer.best(["Hello there."], passages)[0][0] is None


def test_with_markers_goes_before_the_final_punctuation_and_its_closers() -> None:
    from pipeline.citations import with_markers

    assert with_markers("It opened in 1937.", [1, 2]) == "It opened in 1937 [1][2]."
    assert with_markers('He said "yes."', [3]) == 'He said "yes [3]."'
    assert with_markers("(It is red.)", [1]) == "(It is red [1].)"
    assert with_markers("Es ist rot (siehe oben.]", [1]) == "Es ist rot (siehe oben [1].]"
    assert with_markers("它是红色的。", [2]) == "它是红色的 [2]。"
    assert with_markers("No punctuation", [1]) == "No punctuation [1]"
    assert with_markers("Unchanged.", []) == "Unchanged."
