"""RAGPipeline logic with fakes: batching, numbering, post-hoc, iterative re-retrieval."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fakes import FakeCiter, FakeGenerator, FakeRetriever, FakeTokenizer

from pipeline.errors import ContextBudgetError, InputError
from pipeline.rag import IterativeConfig, RAGPipeline
from pipeline.types import Generation, GenerationParams, Passage

CORPUS = [
    Passage("bridge.md", "The Golden Gate Bridge opened in 1937.", "Golden Gate", 0, 0, 38),
    Passage("curie.txt", "Marie Curie won two Nobel Prizes.", "Curie", 0, 10, 43),
    Passage("everest.md", "Everest was first climbed in 1953.", "Everest", 0, 5, 39),
]


def corpus_retriever() -> FakeRetriever:
    """Ranks CORPUS by shared words and always returns ``k`` passages."""
    return FakeRetriever(CORPUS, pad=True)


def scripted(reply: Callable[[str, GenerationParams], Generation], max_context: int = 4096) -> FakeGenerator:
    """Replies by a function of the prompt (Generations as scripted); one token per word."""
    return FakeGenerator(reply, max_context, tokenizer=FakeTokenizer(words=True), regex=True)


def test_batch_is_one_retrieval_and_one_generation_call() -> None:
    ret = corpus_retriever()
    gen = scripted(lambda p, _: Generation("It opened in 1937 [1].", finish_reason="stop"))
    pipe = RAGPipeline(ret, gen, k=2)
    answers = pipe.ask_batch(["When did the bridge open?", "Who won two Nobel Prizes?"], progress=False)
    assert len(ret.calls) == 1 and len(gen.calls) == 1 and len(gen.batches[0]) == 2
    a = answers[0]
    assert a.passages[0].doc_id == "bridge.md"
    assert a.sentences[0].citations == (1,)
    d = a.to_dict()
    assert d["citations"][0]["doc_id"] == "bridge.md" and d["citations"][0]["n"] == 1
    assert {"retrieve_s", "generate_s", "total_s"} <= d["timings"].keys()
    assert answers[1].passages[0].doc_id == "curie.txt"


def test_invalid_citation_never_reaches_output() -> None:
    gen = scripted(lambda p, _: Generation("It opened in 1937 [9].", finish_reason="stop"))
    a = RAGPipeline(corpus_retriever(), gen, k=2).ask("When did the bridge open?")
    d = a.to_dict()
    assert d["citations"] == [] and d["dropped_citations"] == [9]
    assert d["sentences"][0]["citations"] == [] and d["sentences"][0]["dropped_citations"] == [9]


def test_written_citation_forms_resolve_and_uncited_passages_are_reported() -> None:
    from app.cli import format_answer

    gen = scripted(lambda p, _: Generation("It opened in 1937 [1-2]. Curie won [Doc 2\u2020].", finish_reason="stop"))
    a = RAGPipeline(corpus_retriever(), gen, k=3).ask("When did the bridge open?")
    assert [s.citations for s in a.sentences] == [(1, 2), (2,)]
    d = a.to_dict()
    assert [c["n"] for c in d["citations"]] == [1, 2] and d["cited_passages"] == [1, 2]
    assert d["uncited_passages"] == [3] and [p["cited"] for p in d["passages"]] == [True, True, False]
    out = format_answer(a)
    assert out.startswith("It opened in 1937. [1][2] Curie won. [2]")
    assert "shown but not cited: [3]" in out


def test_post_hoc_citation_is_marked() -> None:
    gen = scripted(lambda p, _: Generation("It opened in 1937.", finish_reason="stop"))
    a = RAGPipeline(corpus_retriever(), gen, k=2, post_hoc=FakeCiter(lambda s: (0, 0.9))).ask("bridge open?")
    s = a.to_dict()["sentences"][0]
    assert s["citations"] == [1] and s["post_hoc"] is True


def test_ask_many_reports_bad_questions_in_place() -> None:
    gen = scripted(lambda p, _: Generation("Yes [1].", finish_reason="stop"))
    out = RAGPipeline(corpus_retriever(), gen, k=1).ask_many(["the bridge", "  ", "marie curie won"], progress=False)
    assert isinstance(out[1], InputError)
    assert out[0].passages[0].doc_id == "bridge.md" and out[2].passages[0].doc_id == "curie.txt"  # type: ignore[union-attr]


def test_question_too_long_for_context_is_budget_error() -> None:
    gen = scripted(lambda p, _: Generation("x"), max_context=200)
    with pytest.raises(ContextBudgetError):
        RAGPipeline(corpus_retriever(), gen, k=2, params=GenerationParams(max_tokens=50)).ask("word " * 300)


def test_iterative_mode_reretrieves_and_keeps_numbers_stable() -> None:
    # Round 1 talks about the bridge, round 2 (query = last tokens) about Curie.
    script = iter(
        [
            Generation("The bridge opened in 1937 [1]. Marie Curie", finish_reason="length"),
            Generation(" won two Nobel Prizes [3].", finish_reason="stop"),
        ]
    )
    gen = scripted(lambda p, _: next(script))

    rounds = iter([[CORPUS[0], CORPUS[2]], [CORPUS[1], CORPUS[0]]])
    retriever = FakeRetriever(CORPUS, rank=lambda q, passages, k: next(rounds))
    pipe = RAGPipeline(
        retriever, gen, k=2, iterative=IterativeConfig(stride=8, query_tokens=4), params=GenerationParams(max_tokens=64)
    )
    a = pipe.ask("Tell me about the bridge")
    # Passages keep their first number: bridge [1], everest [2], curie [3].
    assert [p.doc_id for p in a.passages] == ["bridge.md", "everest.md", "curie.txt"]
    assert [s.citations for s in a.sentences] == [(1,), (3,)]
    second_prompt = gen.batches[1][0]
    assert "Document [3] (Title: Curie)" in second_prompt and "Document [1] (Title: Golden Gate)" in second_prompt
    assert second_prompt.endswith("The bridge opened in 1937 [1]. Marie Curie")
    assert a.report["rounds"] == 2


def test_iterative_mode_keeps_the_number_of_a_truncated_passage() -> None:
    """A passage longer than max_doc_tokens is shown cut (a shorter span); it was registered
    under the cut span and so got a new number in every round it was retrieved again
    (reproduced: [long.md 0-29, o.md, long.md 0-29], the same passage as [1] and [3])."""
    from pipeline.prompting import PromptConfig

    words = " ".join(f"w{i}" for i in range(40))
    long = Passage("long.md", words, "Long", 0, 0, len(words))
    other = Passage("o.md", "Other words here.", "Other", 0, 0, 17)
    script = iter(
        [
            Generation("First part [1]", finish_reason="length"),
            Generation(" and more [2]", finish_reason="length"),
            Generation(" and the end [1].", finish_reason="stop"),
        ]
    )
    gen = scripted(lambda p, _: next(script))
    rounds = iter([[long], [other, long], [long, other]])
    retriever = FakeRetriever([long, other], rank=lambda q, passages, k: next(rounds))
    pipe = RAGPipeline(
        retriever,
        gen,
        k=2,
        iterative=IterativeConfig(stride=4, query_tokens=4),
        params=GenerationParams(max_tokens=64),
        prompt=PromptConfig(max_doc_tokens=5),
        clean=False,
    )
    a = pipe.ask("Tell me about long")
    assert [p.doc_id for p in a.passages] == ["long.md", "o.md"]
    shown_long = a.passages[0]
    assert shown_long.end < long.end and long.text[: shown_long.end - shown_long.start] == shown_long.text
    assert "Document [1] (Title: Long)" in gen.batches[1][0] and "Document [1] (Title: Long)" in gen.batches[2][0]
    assert "Document [3]" not in gen.batches[1][0] + gen.batches[2][0]


def test_k_must_be_positive() -> None:
    with pytest.raises(InputError):
        RAGPipeline(corpus_retriever(), scripted(lambda p, _: Generation("")), k=0)


def test_text_output_marks_post_hoc_and_unsupported_sentences() -> None:
    from app.cli import format_answer
    from pipeline.types import AttributedAnswer, Sentence

    a = AttributedAnswer(
        "q",
        "A [1]. B.",
        (Sentence("A [1].", 0, 6, (1,), support=0.9), Sentence("B.", 7, 9, (2,), post_hoc=True, support=0.2)),
        (CORPUS[0], CORPUS[1]),
        {"verification": {"threshold": 0.5, "supported_after": 1, "checked": 2}},
    )
    out = format_answer(a)
    assert out.startswith("A. [1] B. [2]*(unsupported)")
    assert "[2] Curie (curie.txt, characters 10-43)" in out
    assert "verified: 1 of 2 sentences" in out and "1 marked (unsupported)" in out
