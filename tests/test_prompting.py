"""Prompt building: numbering, truncation with exact spans, budget, chat template."""

from __future__ import annotations

import pytest
from fakes import FakeTokenizer

from pipeline.errors import ContextBudgetError, InputError
from pipeline.prompting import PromptConfig, build_prompt, format_document, truncate_passage
from pipeline.types import Passage


def word_tokenizer(chat: bool = False) -> FakeTokenizer:
    """One token per whitespace-separated word; optional toy chat template (``<role>...``)."""
    return FakeTokenizer("tags" if chat else None, words=True)


DOC = "The Golden Gate Bridge opened to pedestrians on May 27, 1937, and to cars the next day."
P = [
    Passage("gg.md", DOC, "Golden Gate Bridge", 1.0, 100, 100 + len(DOC)),
    Passage("mc.txt", "Marie Curie won two Nobel Prizes.", "Marie Curie", 0.5, 0, 33),
]


def test_documents_are_numbered_in_rank_order() -> None:
    built = build_prompt("When did it open?", P, word_tokenizer(), max_context=1000, max_new_tokens=50)
    assert "Document [1] (Title: Golden Gate Bridge): The Golden Gate" in built.text
    assert "Document [2] (Title: Marie Curie): Marie Curie won" in built.text
    assert built.text.rstrip().endswith("Question: When did it open?\nAnswer:")
    assert built.shown == tuple(P) and built.numbers == (1, 2)


def test_chat_template_is_used_when_present() -> None:
    built = build_prompt("Q?", P, word_tokenizer(chat=True), max_context=1000, max_new_tokens=50)
    assert built.text.startswith("<system>Answer the question")
    assert "<user>Document [1]" in built.text and built.text.endswith("<assistant>")


def test_truncation_keeps_span_exact() -> None:
    cut = truncate_passage(P[0], word_tokenizer(), 5)
    assert cut.text == "The Golden Gate Bridge opened"
    assert (cut.start, cut.end) == (100, 100 + len(cut.text))
    assert DOC[cut.start - 100 : cut.end - 100] == cut.text


def test_lowest_ranked_documents_dropped_to_fit() -> None:
    full = build_prompt("Q?", P, word_tokenizer(), max_context=1000, max_new_tokens=10)
    budget = full.n_tokens - 3 + 10  # room for less than both documents
    built = build_prompt("Q?", P, word_tokenizer(), max_context=budget, max_new_tokens=10)
    assert built.shown == (P[0],) and built.n_tokens <= budget - 10


def test_question_that_cannot_fit_is_a_clear_error() -> None:
    with pytest.raises(ContextBudgetError, match="max-model-len"):
        build_prompt("word " * 200, P, word_tokenizer(), max_context=100, max_new_tokens=10)


@pytest.mark.parametrize("q", ["", "   \n"])
def test_empty_question_rejected(q: str) -> None:
    with pytest.raises(InputError, match="empty"):
        build_prompt(q, P, word_tokenizer(), max_context=100, max_new_tokens=10)


def test_custom_numbers_for_iterative_mode() -> None:
    built = build_prompt("Q?", P, word_tokenizer(), max_context=1000, max_new_tokens=10, numbers=[4, 6])
    assert "Document [4]" in built.text and "Document [6]" in built.text and built.numbers == (4, 6)


def test_document_without_title() -> None:
    assert format_document(3, Passage("x", "a\n b")) == "Document [3]: a b"


def test_instruction_marks_documents_as_data() -> None:
    assert "not instructions" in PromptConfig().instruction
