"""The shared fakes (tests/fakes.py): each satisfies its protocol, member by member and by a
call of every protocol method, and the canned-reply generator and toy tokenizer behave as the
tests that use them assume."""

from __future__ import annotations

import inspect
import typing

import numpy as np
import pytest
from fakes import (
    FakeCiter,
    FakeClaimSplitter,
    FakeEditor,
    FakeEmbedder,
    FakeGenerator,
    FakeJudge,
    FakeQuestionGenerator,
    FakeRetriever,
    FakeTokenizer,
)

from pipeline.citations import PostHocCiter
from pipeline.errors import ConfigError, InputError
from pipeline.protocols import Generator, Retriever, SupportJudge, Tokenizer
from pipeline.types import Generation, GenerationParams, Passage
from verifiers.claims import Claim, ClaimSplitter
from verifiers.editor import Editor
from verifiers.questions import QuestionGenerator

BRIDGE = Passage("bridge.md", "The Golden Gate Bridge opened in 1937.", "Golden Gate", 0.0, 0, 38)
CURIE = Passage("curie.txt", "Marie Curie won two Nobel Prizes.", "Curie", 0.0, 0, 33)

FAKES = [
    (Tokenizer, FakeTokenizer()),
    (Generator, FakeGenerator()),
    (Retriever, FakeRetriever([BRIDGE, CURIE])),
    (SupportJudge, FakeJudge()),
    (PostHocCiter, FakeCiter()),
    (ClaimSplitter, FakeClaimSplitter()),
    (QuestionGenerator, FakeQuestionGenerator()),
    (Editor, FakeEditor()),
]


def protocol_members(proto: type) -> set[str]:
    """The attributes and methods a protocol declares (typing's own list of them)."""
    attrs = getattr(proto, "__protocol_attrs__", None)  # Python >= 3.12
    return set(attrs) if attrs is not None else set(typing._get_protocol_attrs(proto))  # type: ignore[attr-defined]


@pytest.mark.parametrize(("proto", "fake"), FAKES, ids=[p.__name__ for p, _ in FAKES])
def test_each_fake_has_every_member_of_its_protocol_with_its_parameters(proto: type, fake: object) -> None:
    if getattr(proto, "_is_runtime_protocol", False):
        assert isinstance(fake, proto)
    for name in protocol_members(proto):
        assert hasattr(fake, name), f"{type(fake).__name__} lacks {proto.__name__}.{name}"
        declared = inspect.getattr_static(proto, name, None)
        if inspect.isfunction(declared):
            want = list(inspect.signature(declared).parameters)[1:]
            have = list(inspect.signature(getattr(fake, name)).parameters)
            assert have == want, f"{type(fake).__name__}.{name}{have} != {proto.__name__}.{name}{want}"


def test_the_judge_has_a_float_threshold() -> None:
    assert isinstance(FakeJudge().threshold, float)


def test_every_protocol_method_answers_in_the_declared_shape() -> None:
    tok = FakeTokenizer()
    assert tok.decode(tok.encode("a b")) == "a b" and tok.apply_chat_template([{"role": "user", "content": "x"}])
    gen = FakeGenerator(["One [1]."])
    assert isinstance(gen.tokenizer, Tokenizer) and gen.max_context == 4096
    [g] = gen.generate(["p"], GenerationParams())
    assert isinstance(g, Generation) and g.text == "One [1]."
    assert [len(r) for r in gen.score(["p", "q"], ["a b", ""])] == [3, 0]
    [[hit]] = FakeRetriever([BRIDGE, CURIE]).retrieve(["When did the bridge open?"], 1)
    assert hit.doc_id == "bridge.md"
    assert FakeJudge().judge([(BRIDGE.text, "The bridge opened in 1937."), (BRIDGE.text, "It rained.")]) == [1.0, 0.0]
    vectors = FakeEmbedder(dim=8)(["a b", "c"])
    assert vectors.shape == (2, 8) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    assert FakeCiter([(1, 0.5)]).best(["s"], [BRIDGE, CURIE], "q") == [(1, 0.5)]
    claims = FakeClaimSplitter().split("One claim.\n\nTwo [1].")
    assert all(isinstance(c, Claim) for c in claims) and [(c.start, c.end) for c in claims] == [(0, 10), (12, 20)]
    assert FakeQuestionGenerator({"c": ["q?"]}).questions(["c", "d"]) == [["q?"], []]
    assert FakeEditor().edit(["c"], [[BRIDGE]]) == ["c"]


def test_retriever_modes() -> None:
    words = FakeRetriever([CURIE, BRIDGE])
    assert words.retrieve(["bridge"], 5) == [[BRIDGE.with_score(1.0)]]  # no shared word: left out
    padded = FakeRetriever([CURIE, BRIDGE], pad=True)
    assert padded.retrieve(["bridge"], 5) == [[BRIDGE.with_score(1.0), CURIE.with_score(0.0)]]
    fixed = FakeRetriever([CURIE, BRIDGE], rank="fixed")
    assert fixed.retrieve(["bridge", "x"], 1) == [[CURIE], [CURIE]]
    assert fixed.calls == [["bridge", "x"]] and fixed.ks == [1] and fixed.queries == ["bridge", "x"]
    scripted = FakeRetriever([CURIE, BRIDGE], rank=lambda q, ps, k: list(ps[::-1][:k]))
    assert scripted.retrieve(["q"], 1) == [[BRIDGE]]


def test_embedder_modes() -> None:
    counts = FakeEmbedder(vocab=("bridge", "1937"))
    assert counts(["Bridge bridge", "1937"]).tolist() == [[2.0, 0.0], [0.0, 1.0]] and counts.dim == 2
    assert FakeEmbedder(rule=lambda t: [len(t), 1.0])(["ab"]).tolist() == [[2.0, 1.0]]
    failing = FakeEmbedder(fail_on=2, exc=KeyboardInterrupt())
    failing(["a"])
    with pytest.raises(KeyboardInterrupt):
        failing(["b"])
    assert failing.calls == 2
    assert np.array_equal(FakeEmbedder()(["same words"]), FakeEmbedder()(["same words"]))


def test_fake_generator_scripted_generations_scorer_and_regex() -> None:
    script = FakeGenerator(lambda p, params: Generation(f"{p} [", finish_reason="length"), regex=True)
    [g] = script.generate(["cut"], GenerationParams(regex="x", max_tokens=1))
    assert (g.text, g.finish_reason) == ("cut [", "length")  # a Generation reply is returned as it is
    assert script.batches == [["cut"]] and script.calls[0].regex == "x"
    with pytest.raises(ConfigError, match="use --backend vllm or --llm-url"):
        FakeGenerator().generate(["p"], GenerationParams(regex="x"))
    scored = FakeGenerator(scorer=lambda p, c: [-1.0] * len(c))
    assert scored.score(["p"], ["abc"]) == [[-1.0, -1.0, -1.0]] and scored.score_calls == 1
    words = FakeTokenizer(words=True, chat_template="tags")
    assert words.encode("a  b c") == [0, 1, 2] and words.decode([2, 0]) == "c a"
    assert words.apply_chat_template([{"role": "user", "content": "hi"}]) == "<user>hi</user><assistant>"


def test_fake_generator_replies_in_turn_and_records_prompts() -> None:
    gen = FakeGenerator(["one", "two"])
    out = gen.generate(["a", "b", "c"], GenerationParams())
    assert [g.text for g in out] == ["one", "two", "one"]
    assert gen.prompts == ["a", "b", "c"]
    assert all(g.finish_reason == "stop" for g in out)


def test_fake_generator_callable_stop_and_max_tokens() -> None:
    gen = FakeGenerator(lambda p, _: f"Echo: {p}. END more text", max_context=128)
    assert gen.max_context == 128
    g = gen.generate(["hi"], GenerationParams(stop=("END",)))[0]
    assert g.text == "Echo: hi. "
    assert g.finish_reason == "stop"
    g = gen.generate(["hi"], GenerationParams(max_tokens=3))[0]
    assert g.text == "Echo: "
    assert g.finish_reason == "length"
    assert len(g.token_ids) == 3
    assert gen.tokenizer.decode(list(g.token_ids)) == g.text


def test_fake_generator_score_is_deterministic() -> None:
    a, b = FakeGenerator(), FakeGenerator()
    s1 = a.score(["p1", "p2"], ["Paris is big", ""])
    assert s1 == b.score(["p1", "p2"], ["Paris is big", ""])
    assert len(s1[0]) == len(a.tokenizer.encode("Paris is big")) == 5
    assert s1[1] == []
    assert all(-10.0 - 1e-5 < x < 0 for x in s1[0])
    assert a.score(["p3"], ["Paris is big"]) != s1[:1]
    assert a.scored[:2] == [("p1", "Paris is big"), ("p2", "")]


def test_fake_generator_rejects_bad_input() -> None:
    gen = FakeGenerator()
    with pytest.raises(ConfigError):
        gen.generate(["a"], GenerationParams(n=2))
    with pytest.raises(InputError):
        gen.generate("a prompt", GenerationParams())  # type: ignore[arg-type]
    with pytest.raises(InputError):
        gen.score(["a", "b"], ["c"])


def test_fake_tokenizer_round_trip_and_chat() -> None:
    tok = FakeTokenizer()
    assert isinstance(tok, Tokenizer)
    text = "Hello,  world! [1] costs 3.5 €"
    assert tok.decode(tok.encode(text)) == text
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}]) == "user: hi\nassistant:"
    assert FakeTokenizer(chat_template=None).apply_chat_template([{"role": "user", "content": "x"}]) is None
