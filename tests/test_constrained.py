"""Constrained citation mode: the regex, the length-cut handling, and real vLLM engines
(in process, async, and the OpenAI-compatible server) on the tiny random Llama."""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeCiter, FakeGenerator, FakeRetriever

from pipeline.citations import cite_answer
from pipeline.constrained import (
    ConstraintSpec,
    answer_regex,
    check_citation_mode,
    citation_tail_regex,
    generate_constrained,
    number_regex,
    resolve_citation_mode,
    split_complete,
    tail_reserve,
    whole_words,
    word_regex,
)
from pipeline.errors import ConfigError, GeneratorUnavailableError
from pipeline.types import Generation, GenerationParams, Passage

SMALL = ConstraintSpec(max_sentences=2, max_words=4, max_citations=2)


def _shown(k: int) -> list[Passage]:
    return [Passage(f"d{i}", f"passage {i}", f"T{i}", 0.0, 0, 9) for i in range(1, k + 1)]


# --------------------------------------------------------------------------- the regex
@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("Paris is the capital [1].", True),
        ("Paris is the capital[1].", True),
        ("Paris is the capital. [1]", True),  # citation after the full stop
        ("Paris is the capital.[1][2] It is big? [3]", True),
        ("Paris is the capital. [1].", False),
        (" Paris [1].", True),  # one leading space (plain "Answer:" prompts)
        ("It opened in 1937 [2][3]. It is 3.5 km long [5].", True),
        ("Beyoncé sang it, twice [1].", True),
        ("U.S Army [4].", True),
        ("McDonald and Documen and Docu [1].", True),
        ("Paris [6].", False),  # number beyond k
        ("Paris [0].", False),
        ("Paris [01].", False),
        ("Paris.", False),  # no citation
        ("Paris. [1] Rome.", False),
        ("Paris [1]", False),  # no full stop
        ("[1].", False),  # no text
        ("Paris [1][2][3][4].", False),  # more than 3 groups
        ("Paris [1, 2].", False),
        ("Document [1] says Paris [1].", False),
        ("Documents say Paris [1].", False),
        ("The xDocument says [1].", False),
        ("Paris. It is big [1].", False),  # a sentence without its citation
        ("U.S. Army [1].", False),  # "." then a space would split the sentence
        ("It is 3.5. [1]", True),
        ('"Paris." [1].', False),
        ("a\nb [1].", False),
        ("a  b [1].", False),
        ("Paris [1].  Rome [2].", False),
        ("a [1]. b [2]. c [3]. d [4].", False),  # more than 3 sentences
        ("  Paris [1].", False),
    ],
)
def test_answer_regex_hand_checked(text: str, ok: bool) -> None:
    assert bool(re.fullmatch(answer_regex(5), text)) is ok


def test_number_regex() -> None:
    for k in (1, 2, 5, 9, 10, 12, 31):
        allowed = {str(n) for n in range(0, 120) if re.fullmatch(number_regex(k), str(n))}
        assert allowed == {str(n) for n in range(1, k + 1)}
    assert not re.fullmatch(number_regex(12), "012")
    with pytest.raises(ConfigError):
        number_regex(0)


def test_bounds_of_the_spec() -> None:
    rx = answer_regex(3, SMALL)
    assert re.fullmatch(rx, "a b c d [1][2]. e [3].")
    assert not re.fullmatch(rx, "a b c d e [1].")  # 5 words > 4
    assert not re.fullmatch(rx, "a [1]. b [2]. c [3].")  # 3 sentences > 2
    assert not re.fullmatch(rx, "a [1][2][3].")  # 3 groups > 2
    assert re.fullmatch(rx, "abcdefghijklmnopqrstuvwxyz0123456789 [1].")  # words are unbounded
    with pytest.raises(ConfigError):
        ConstraintSpec(max_sentences=0)
    with pytest.raises(ConfigError, match="either"):
        ConstraintSpec(cite_position="middle")


def test_cite_position() -> None:
    before = answer_regex(3, ConstraintSpec(cite_position="before-stop"))
    after = answer_regex(3, ConstraintSpec(cite_position="after-stop"))
    assert re.fullmatch(before, "Paris [1].") and not re.fullmatch(before, "Paris. [1]")
    assert (
        re.fullmatch(after, "Paris. [1]")
        and re.fullmatch(after, "Paris? [1]")
        and not re.fullmatch(after, "Paris [1].")
    )
    assert citation_tail_regex(3, after_stop=True) == r" ?(?:\[[1-3]\]){1,3}"


def _word_is_valid(s: str) -> bool:
    """What a word may be: no "Document"; an ender only inside, before a plain character."""
    if "Document" in s:
        return False
    for i, c in enumerate(s):
        if c in ".!?" and (i + 1 == len(s) or s[i + 1] in ".!?\"')\u201d\u2019D"):
            return False
    return True


def test_word_regex_exhaustively_on_a_small_alphabet() -> None:
    """Every string of up to 5 characters over letters that spell "Document", an ender and
    a closing quote matches iff it is a valid word; so do random longer ones, and none
    with "Document" inside matches."""
    rx = re.compile(word_regex())
    alphabet = 'Docuemntx."'
    for n in range(1, 6):
        for t in itertools.product(alphabet, repeat=n):
            s = "".join(t)
            assert bool(rx.fullmatch(s)) is _word_is_valid(s), s
    rng = random.Random(0)
    for _ in range(3000):
        left = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 4)))
        right = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 4)))
        assert not rx.fullmatch(left + "Document" + right)
        s = "".join(rng.choice(alphabet) for _ in range(rng.randrange(6, 14)))
        assert bool(rx.fullmatch(s)) is _word_is_valid(s), s


def _random_answer(rng: random.Random, k: int, spec: ConstraintSpec) -> str:
    """A random member of ``answer_regex(k, spec)`` built from awkward pieces: enders inside
    words, quotes, non-ASCII, abbreviations, runs of D and prefixes of "Document"."""
    pieces = [
        "a",
        "Z",
        "1",
        "é",
        "“",
        '"',
        "(",
        ",",
        ";",
        ":",
        "-",
        ".5",
        "!x",
        "?y",
        "D",
        "Do",
        "Docume",
        "DDocumen",
        "Mr",
        "U.S",
        "e.g",
        "etc",
    ]

    def word() -> str:
        while True:
            w = "".join(rng.choice(pieces) for _ in range(rng.randrange(1, 4)))
            if "Document" not in w and not w.endswith((".", "!", "?")):
                return w

    def sentence() -> str:
        words = " ".join(word() for _ in range(rng.randrange(1, spec.max_words + 1)))
        cites = "".join(f"[{rng.randrange(1, k + 1)}]" for _ in range(rng.randrange(1, spec.max_citations + 1)))
        if rng.random() < 0.5:
            return words + rng.choice(["", " "]) + cites + "."
        return words + rng.choice(".!?") + rng.choice(["", " "]) + cites

    return rng.choice(["", " "]) + " ".join(sentence() for _ in range(rng.randrange(1, spec.max_sentences + 1)))


def test_every_matching_answer_parses_into_cited_sentences() -> None:
    """Random members of the regex split into sentences that each carry numbers within 1..k,
    none dropped, none post hoc, and together keep every number written. (Exactly one
    sentence per citation tail, except that the splitter keeps "etc. [1] Next" together:
    an abbreviation before an after-stop tail.)"""
    rng = random.Random(7)
    for k, spec in ((4, SMALL), (12, ConstraintSpec())):
        rx = re.compile(answer_regex(k, spec))
        for _ in range(400):
            text = _random_answer(rng, k, spec)
            assert rx.fullmatch(text), text
            parsed = cite_answer(text.strip(), _shown(k))
            tails = len(re.findall(r"\](?!\[)", text))
            abbreviated = any(a in text for a in ("etc", "U.S", "Mr", "e.g"))
            assert len(parsed.sentences) == tails or (abbreviated and len(parsed.sentences) < tails), text
            assert not parsed.dropped
            assert set().union(*(s.citations for s in parsed.sentences)) == {
                int(n) for n in re.findall(r"\d+(?=\])", text)
            }
            for s in parsed.sentences:
                assert s.citations and all(1 <= n <= k for n in s.citations)
                assert not s.post_hoc
                assert s.text.endswith(("].", "]"))


def test_split_complete_and_whole_words() -> None:
    rx = answer_regex(3)
    assert split_complete("A b [1]. C d [2", rx) == ("A b [1].", "C d [2")
    assert split_complete("A b [1]. C [2].", rx) == ("A b [1]. C [2].", "")
    assert split_complete("A b. [1][2", rx) == ("A b. [1]", "[2")  # a complete after-stop tail
    assert split_complete("A b. [1] C", rx) == ("A b. [1]", "C")
    assert split_complete("A b c", rx) == ("", "A b c")
    assert whole_words("A b. [", cut_by_length=True) == "A b."
    assert whole_words("A b [2][", cut_by_length=True) == "A b"
    assert whole_words("A bc", cut_by_length=True) == "A"  # "bc" may be a cut word
    assert whole_words("A bc", cut_by_length=False) == "A bc"
    assert whole_words("Abc", cut_by_length=True) == ""
    assert tail_reserve(5) == 1 + 3 * 3 + 1  # " [5][5][5]."
    assert tail_reserve(12) == 1 + 3 * 4 + 1


def test_citation_mode_names() -> None:
    assert check_citation_mode("constrained") == "constrained"
    with pytest.raises(ConfigError, match="auto, post-hoc, constrained"):
        check_citation_mode("posthoc")


class _Regexless:
    max_context = 4096


class _Regexful(_Regexless):
    supports_regex = True


def test_auto_mode_is_constrained_only_where_decoding_can_be_constrained() -> None:
    from pipeline.streaming import TokenTap

    assert resolve_citation_mode("auto", _Regexful()) == "constrained"
    assert resolve_citation_mode("auto", _Regexless()) == "post-hoc"
    # A wrapper that forwards attributes (the streaming tap) keeps the capability.
    assert resolve_citation_mode("auto", TokenTap(_Regexful(), lambda _t: None)) == "constrained"
    # Constrained decoding does not work with the iterative loop: auto falls back, explicit stays an error.
    assert resolve_citation_mode("auto", _Regexful(), iterative=True) == "post-hoc"
    for mode in ("post-hoc", "constrained", "use-aware"):
        assert resolve_citation_mode(mode, _Regexless()) == mode
    with pytest.raises(ConfigError):
        resolve_citation_mode("constrainted", _Regexful())


def test_pipeline_records_the_resolved_mode() -> None:
    from pipeline.rag import IterativeConfig, RAGPipeline

    one = FakeRetriever(_shown(1), rank="fixed")

    pipe = RAGPipeline(one, FakeGenerator(["Paris [1]."]))
    assert pipe.citations == "auto" and pipe.citation_mode() == "post-hoc"  # the fake cannot constrain decoding
    assert pipe.ask("Where?").report["citation_mode"] == "post-hoc"
    regexful = FakeGenerator(["Paris [1]."], regex=True, supports_regex=True)
    assert RAGPipeline(one, regexful).citation_mode() == "constrained"
    assert RAGPipeline(one, regexful, iterative=IterativeConfig()).citation_mode() == "post-hoc"
    # "auto" never asks for a constrained answer that cannot fit: max_tokens must exceed the tail reserve.
    tight = GenerationParams(max_tokens=tail_reserve(5))
    assert RAGPipeline(one, regexful, params=tight).citation_mode() == "post-hoc"
    assert (
        RAGPipeline(one, regexful, params=GenerationParams(max_tokens=tail_reserve(5) + 1)).citation_mode()
        == "constrained"
    )
    with pytest.raises(ConfigError, match="iterative"):
        RAGPipeline(one, regexful, citations="constrained", iterative=IterativeConfig())


# --------------------------------------------------------------------------- the loop, scripted
def scripted(reply: Callable[[str, GenerationParams], Generation]) -> FakeGenerator:
    """Replies by a function of (prompt, params), regex allowed; records every call."""
    return FakeGenerator(reply, regex=True)


def test_one_call_per_k_with_its_regex_and_the_reserved_budget() -> None:
    gen = scripted(lambda p, params: Generation("Paris [1].", finish_reason="stop"))
    out = generate_constrained(gen, ["p1", "p2", "p3"], [5, 3, 5], GenerationParams(max_tokens=64))
    assert [r.generation.text for r in out] == ["Paris [1]."] * 3
    assert [(b, c.regex) for b, c in zip(gen.batches, gen.calls)] == [
        (["p2"], answer_regex(3)),
        (["p1", "p3"], answer_regex(5)),
    ]
    assert {c.max_tokens for c in gen.calls} == {64 - tail_reserve(3), 64 - tail_reserve(5)} == {64 - 11}


def test_a_cut_after_a_complete_sentence_drops_the_rest() -> None:
    gen = scripted(lambda p, params: Generation("Paris is big [1]. It has a tower [", finish_reason="length"))
    [r] = generate_constrained(gen, ["p"], [2], GenerationParams(max_tokens=30))
    assert r.generation.text == "Paris is big [1]."
    assert r.dropped_chars == len("It has a tower [")
    assert not r.closed and len(gen.calls) == 1


def test_a_cut_before_any_citation_is_closed_by_a_tail_decode() -> None:
    def reply(prompt: str, params: GenerationParams) -> Generation:
        if params.regex == citation_tail_regex(3):
            assert prompt == "PROMPT Paris is the capital"  # the cut word "of" is gone
            assert params.max_tokens == tail_reserve(3)
            return Generation(" [2].", finish_reason="stop")
        return Generation("Paris is the capital of", finish_reason="length")

    gen = scripted(reply)
    [r] = generate_constrained(gen, ["PROMPT "], [3], GenerationParams(max_tokens=40))
    assert r.generation.text == "Paris is the capital [2]." and r.closed
    assert re.fullmatch(answer_regex(3), r.generation.text)
    parsed = cite_answer(r.generation.text, _shown(3))
    assert [s.citations for s in parsed.sentences] == [(2,)]


def test_a_cut_after_a_full_stop_gets_only_the_groups() -> None:
    def reply(prompt: str, params: GenerationParams) -> Generation:
        if params.regex == citation_tail_regex(3, after_stop=True):
            assert prompt == "PROMPT Paris is big."
            return Generation(" [3]", finish_reason="stop")
        return Generation("Paris is big. [", finish_reason="length")

    [r] = generate_constrained(scripted(reply), ["PROMPT "], [3], GenerationParams(max_tokens=40))
    assert r.generation.text == "Paris is big. [3]" and r.closed
    assert [s.citations for s in cite_answer(r.generation.text, _shown(3)).sentences] == [(3,)]


def test_an_unclosable_answer_is_empty_not_uncited() -> None:
    def reply(prompt: str, params: GenerationParams) -> Generation:
        if params.regex == citation_tail_regex(3):
            return Generation(" [2]", finish_reason="length")  # cut before its full stop
        return Generation("Paris is", finish_reason="length")

    [r] = generate_constrained(scripted(reply), ["p"], [3], GenerationParams(max_tokens=40))
    assert r.generation.text == "" and not r.closed
    [r] = generate_constrained(
        scripted(lambda p, params: Generation("Supercalifragilistic", finish_reason="length")),
        ["p"],
        [3],
        GenerationParams(max_tokens=40),
    )
    assert r.generation.text == ""


def test_nothing_shown_means_no_answer_and_no_call() -> None:
    gen = scripted(lambda p, params: Generation("x [1].", finish_reason="stop"))
    out = generate_constrained(gen, ["a", "b"], [0, 1], GenerationParams(max_tokens=40))
    assert [r.generation.text for r in out] == ["", "x [1]."]
    assert gen.batches == [["b"]]


def test_a_backend_that_ignores_the_regex_is_an_error() -> None:
    gen = scripted(lambda p, params: Generation("Document [1] (Title: x): y [1].", finish_reason="stop"))
    with pytest.raises(GeneratorUnavailableError, match="ignored the structured-output regex"):
        generate_constrained(gen, ["p"], [2], GenerationParams(max_tokens=40))


def test_too_small_a_budget_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="--max-tokens above 11"):
        generate_constrained(scripted(lambda p, q: Generation("")), ["p"], [5], GenerationParams(max_tokens=11))


def test_fake_backend_refuses_a_regex() -> None:
    with pytest.raises(ConfigError, match="use --backend vllm or --llm-url"):
        FakeGenerator(["x [1]."]).generate(["p"], GenerationParams(regex="x"))


# --------------------------------------------------------------------------- pipeline, settings, CLI
def test_pipeline_records_the_mode_and_adds_nothing_post_hoc() -> None:
    from test_rag import corpus_retriever
    from test_rag import scripted as scripted_words

    from pipeline.rag import RAGPipeline

    def never(sentence: str) -> Any:
        raise AssertionError("post hoc must not run in constrained mode")

    seen: list[GenerationParams] = []

    def reply(prompt: str, params: GenerationParams) -> Generation:
        seen.append(params)
        return Generation("It opened in 1937 [1]. Curie won twice [2].", finish_reason="stop")

    citer = FakeCiter(never)
    pipe = RAGPipeline(corpus_retriever(), scripted_words(reply), k=2, post_hoc=citer, citations="constrained")
    a = pipe.ask("When did the Golden Gate Bridge open?")
    assert citer.calls == []
    assert seen[0].regex == answer_regex(2)
    d = a.to_dict()
    assert d["citation_mode"] == "constrained"
    assert [(s["citations"], s["post_hoc"]) for s in d["sentences"]] == [([1], False), ([2], False)]
    post = RAGPipeline(corpus_retriever(), scripted_words(lambda p, q: Generation("x")), k=2)
    assert post.ask("bridge?").to_dict()["citation_mode"] == "post-hoc"


def test_pipeline_rejects_unknown_mode_and_iterative() -> None:
    from test_rag import corpus_retriever
    from test_rag import scripted as scripted_words

    from pipeline.rag import IterativeConfig, RAGPipeline

    gen = scripted_words(lambda p, q: Generation("x"))
    with pytest.raises(ConfigError, match="valid modes"):
        RAGPipeline(corpus_retriever(), gen, citations="by-magic")
    with pytest.raises(ConfigError, match="--iterative"):
        RAGPipeline(corpus_retriever(), gen, citations="constrained", iterative=IterativeConfig())


def test_settings_and_factory_reject_backends_without_structured_outputs(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from app.factory import build_pipeline
    from pipeline.config import Settings

    assert Settings(index=tmp_path).citations == "auto"
    with pytest.raises(ValidationError):
        Settings(index=tmp_path, citations="nope")
    with pytest.raises(ConfigError, match="use --backend vllm or --llm-url"):
        build_pipeline(Settings(index=tmp_path, backend="transformers", citations="constrained"))


def test_cli_lists_the_citation_modes() -> None:
    from click.testing import CliRunner

    from app.cli import cli

    res = CliRunner().invoke(cli, ["ask", "--help"])
    assert res.exit_code == 0 and "--citations [auto|post-hoc|constrained|use-aware]" in res.output
    res = CliRunner().invoke(cli, ["ask", "q", "--index", "x", "--citations", "magic"])
    assert res.exit_code == 2 and "post-hoc" in res.output


# --------------------------------------------------------------------------- real engines (tiny model)
QUESTIONS = [
    "What is the capital of France?",
    "At what temperature does water boil?",
    "What does a citation tell the reader?",
    "How often does the moon orbit the earth?",
]


def _tiny_corpus_retriever() -> Any:
    from tiny_model import training_text

    texts = list(dict.fromkeys(training_text()))
    corpus = [Passage(f"doc{i}", t, f"Doc {i}", 0.0, 0, len(t)) for i, t in enumerate(texts)]

    return FakeRetriever(corpus, pad=True)


def _assert_constrained(answers: Sequence[Any], k: int) -> None:
    for a in answers:
        d = a.to_dict()
        assert d["citation_mode"] == "constrained"
        shown = len(d["passages"])
        assert shown == k
        assert a.text, "the tiny model always writes at least a word within the budget"
        assert re.fullmatch(answer_regex(shown), a.text), a.text
        assert a.sentences and len(a.sentences) == len(re.findall(r"\](?!\[)", a.text))
        for s in a.sentences:
            assert s.citations and all(1 <= n <= shown for n in s.citations) and not s.post_hoc
        assert "Document" not in a.text and "\n" not in a.text


@pytest.mark.parametrize("k", [3, 5])
def test_tiny_vllm_pipeline_answers_with_valid_citations(tiny_vllm: Any, k: int) -> None:
    from pipeline.rag import RAGPipeline

    pipe = RAGPipeline(
        _tiny_corpus_retriever(), tiny_vllm, k=k, params=GenerationParams(max_tokens=96), citations="constrained"
    )
    _assert_constrained(pipe.ask_batch(QUESTIONS, progress=False), k)


def test_tiny_vllm_cut_answers_still_cite(tiny_vllm: Any) -> None:
    """A budget too small for a free sentence of the random model: every answer is either
    trimmed to its complete sentences or closed by the tail decode, never left uncited."""
    from pipeline.rag import RAGPipeline

    spec = ConstraintSpec(max_sentences=3, max_words=40)
    pipe = RAGPipeline(
        _tiny_corpus_retriever(),
        tiny_vllm,
        k=3,
        params=GenerationParams(max_tokens=20),
        citations="constrained",
        constraint=spec,
    )
    prompts = [pipe._build(q, pipe.retriever.retrieve([q], 3)[0]) for q in QUESTIONS]
    results = generate_constrained(tiny_vllm, [p.text for p in prompts], [3] * len(prompts), pipe.params, spec)
    assert any(r.closed for r in results), "the random model should run out of tokens mid-sentence here"
    for r in results:
        assert r.generation.text and re.fullmatch(answer_regex(3, spec), r.generation.text)
    _assert_constrained(pipe.ask_batch(QUESTIONS, progress=False), 3)


def test_tiny_vllm_server_honours_the_regex(tiny_vllm_server: Any, tiny_vllm: Any) -> None:
    from pipeline.generators.openai_http import OpenAIGenerator

    rx = answer_regex(4)
    params = GenerationParams(max_tokens=48, regex=rx)
    with OpenAIGenerator(tiny_vllm_server.url, timeout=60) as http:
        outs = http.generate(QUESTIONS, params)
        streamed = "".join(g.text for g in http.stream(QUESTIONS[0], params))
    local = tiny_vllm.generate(QUESTIONS, params)
    for g in outs:
        done, rest = split_complete(g.text, rx)
        assert done or rest
        if done:
            assert re.fullmatch(rx, done)
        if g.finish_reason == "stop":  # the model may stop only where the regex accepts
            assert re.fullmatch(rx, g.text) and not rest
    assert [g.text for g in outs] == [g.text for g in local]
    assert streamed == outs[0].text


def test_tiny_transformers_backend_refuses_a_regex(tiny_model_dir: Path) -> None:
    from pipeline.generators.hf import TransformersGenerator

    gen = TransformersGenerator(str(tiny_model_dir))
    with pytest.raises(ConfigError, match="constrained citations need a vLLM backend: use --backend vllm or --llm-url"):
        gen.generate(["hello"], GenerationParams(max_tokens=4, regex="a+"))


def test_tiny_async_engine_honours_the_regex(tiny_model_dir: Path, tiny_vllm: Any) -> None:
    from pipeline.generators.vllm_async import AsyncVLLMGenerator

    rx = "(?:ab|c){2,6}"
    params = GenerationParams(max_tokens=16, regex=rx)
    with AsyncVLLMGenerator(str(tiny_model_dir), max_model_len=512) as gen:
        outs = gen.generate(QUESTIONS[:2], params)
        streamed = "".join(g.text for g in gen.stream(QUESTIONS[0], params))
    assert all(re.fullmatch(rx, g.text) for g in outs), [g.text for g in outs]
    assert streamed == outs[0].text
    assert [g.text for g in outs] == [g.text for g in tiny_vllm.generate(QUESTIONS[:2], params)]
