"""pipeline.cleaning: the prompt's scaffolding never reaches the answer."""

from __future__ import annotations

from test_rag import corpus_retriever, scripted

from pipeline.cleaning import SCAFFOLD_STOPS, clean_answer
from pipeline.rag import RAGPipeline
from pipeline.types import Generation, GenerationParams


def test_copied_header_is_removed_and_becomes_a_citation_of_that_document() -> None:
    raw = (
        "Document [1] (Title: Olm Castle): Olm Castle was built in 1412 by the lords of Olm. It stands on a hill.\n"
        "Document [2] (Title: Olm): Olm is a village.\n"
        "Document [3] (Title: Castles): Castles are old."
    )
    out = clean_answer(raw)
    assert out.text == "Olm Castle was built in 1412 by the lords of Olm [1]. It stands on a hill."
    assert out.removed == ("document header [1]", "listing of documents")


def test_header_with_its_own_marker_keeps_the_marker() -> None:
    assert clean_answer("Document [2]: The bridge opened in 1937 [2].").text == "The bridge opened in 1937 [2]."


def test_numbered_title_echo_needs_the_shown_title() -> None:
    titles = {2: "Golden Gate Bridge"}
    assert clean_answer("[2] Golden Gate Bridge: It opened in 1937.", titles).text == "It opened in 1937 [2]."
    # "[2] Note:" is not the title of document 2: an ordinary sentence stays as written.
    assert clean_answer("[2] Note: it opened in 1937.", titles).text == "[2] Note: it opened in 1937."


def test_inner_header_and_title_become_a_plain_marker() -> None:
    out = clean_answer("According to Document [3] (Title: Foo), it is red.")
    assert out.text == "According to [3], it is red."


def test_unclosed_title_header_goes_with_the_rest_of_its_line() -> None:
    # Seen in constrained answers (the regex forbids "Document", not "(Title:").
    out = clean_answer("Nigeria is the largest oil producer in Africa. [2] (Title: U.S. [1][2]\nIt is hot. [3]")
    assert out.text == "Nigeria is the largest oil producer in Africa. [2]\nIt is hot. [3]"
    assert out.removed == ("unclosed title",)
    out = clean_answer("The form of Mozart's Symphony No. [1] (Title: Symphony No. [2] in [3][4][5].")
    assert out.text == "The form of Mozart's Symphony No. [1]"
    # A closed one is still only the header.
    assert clean_answer("It is red (Title: Foo). [1]").text == "It is red. [1]"


def test_new_question_block_ends_the_answer_and_a_leading_label_goes() -> None:
    out = clean_answer("Answer: Paris is the capital [1].\nQuestion: what is the capital of Spain?\nAnswer: Madrid")
    assert out.text == "Paris is the capital [1]."
    assert clean_answer("Question: what is the capital?\nParis [1].").text == "Paris [1]."


def test_unfinished_last_sentence_is_dropped_only_when_truncated() -> None:
    raw = "The bridge opened in 1937 [1]. It was painted international"
    assert clean_answer(raw, truncated=True).text == "The bridge opened in 1937 [1]."
    assert clean_answer(raw, truncated=False).text == raw
    # A single unfinished sentence is all there is: kept.
    assert clean_answer("The bridge opened in", truncated=True).text == "The bridge opened in"


def test_clean_text_is_unchanged() -> None:
    raw = "Marie Curie won two Nobel Prizes [2]. She was born in Warsaw."
    out = clean_answer(raw, {2: "Curie"}, truncated=True)
    assert out.text == raw and not out.changed


def test_pipeline_stops_at_scaffolding_and_reports_the_raw_text() -> None:
    seen: list[GenerationParams] = []

    def reply(prompt: str, params: GenerationParams) -> Generation:
        seen.append(params)
        return Generation(
            "Document [1] (Title: Golden Gate): The Golden Gate Bridge opened in 1937.", finish_reason="stop"
        )

    pipe = RAGPipeline(corpus_retriever(), scripted(reply), k=2)
    a = pipe.ask("When did the Golden Gate Bridge open?")
    assert set(SCAFFOLD_STOPS) <= set(seen[0].stop)
    assert a.text == "The Golden Gate Bridge opened in 1937 [1]."
    assert a.sentences[0].citations == (1,) and not a.sentences[0].post_hoc
    assert a.report["cleaned"]["raw_text"].startswith("Document [1]")
    # clean=False keeps the raw text (what bench/bench_ask.py compares against).
    raw = RAGPipeline(corpus_retriever(), scripted(reply), k=2, clean=False).ask("When did it open?")
    assert raw.text.startswith("Document [1]") and "cleaned" not in raw.report
