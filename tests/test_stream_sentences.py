"""``sentence`` events of a streamed answer (pipeline.streaming.SentenceStream).

The logic with fakes here (when a sentence is complete, that its event is the final answer's
sentence, corrections after later stages); the real server path (tiny Llama on vLLM, the
sample index, verify on and off, post hoc and constrained) is in the second half.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fakes import FakeCiter, FakeGenerator, FakeRetriever, FakeTokenizer
from test_serve import QUESTION, check_answer, serving, settings, sse

from pipeline.rag import RAGPipeline
from pipeline.streaming import SentenceStream, TokenTap, ask_streaming, sentence_event
from pipeline.types import GenerationParams, Passage, Quote, Sentence

CORPUS = [
    Passage("bridge.md", "The Golden Gate Bridge opened in 1937.", "Golden Gate", 0, 0, 38),
    Passage("curie.txt", "Marie Curie won two Nobel Prizes.", "Curie", 0, 10, 43),
]


def stream_pipe(pieces: tuple[str, ...]) -> RAGPipeline:
    gen = FakeGenerator(["".join(pieces)], tokenizer=FakeTokenizer(words=True), stream=pieces)
    return RAGPipeline(FakeRetriever(CORPUS, pad=True), gen, k=2, citations="post-hoc")


def run_stream(pipe: RAGPipeline) -> tuple[list[tuple[str, Any]], Any]:
    """Token and sentence events in the order they were reported, and the answer."""
    events: list[tuple[str, Any]] = []
    stream = SentenceStream(lambda e: events.append(("sentence", e)))
    answer = ask_streaming(pipe, "When did the bridge open?", lambda t: events.append(("token", t)), None, stream)
    return events, answer


def final_sentences(events: list[tuple[str, Any]]) -> dict[int, Any]:
    last: dict[int, Any] = {}
    for name, e in events:
        if name == "sentence":
            last[e["index"]] = e
    return last


def test_a_sentence_is_sent_once_the_next_one_starts() -> None:
    pieces = ("It opened", " in 1937 [1].", " [2]", " It is", " red [2]", ". It was", " cut")
    events, answer = run_stream(stream_pipe(pieces))
    names = [n if n == "sentence" else f"token:{t}" for n, t in events]
    # The markers after the full stop still belong to sentence 0: it is complete only when
    # "It is" starts; sentence 1 when "It was" starts; the last one when the generation ends.
    assert names == [
        "token:It opened", "token: in 1937 [1].", "token: [2]", "token: It is", "sentence",
        "token: red [2]", "token:. It was", "sentence", "token: cut", "sentence",
    ]  # fmt: skip
    sent = [e for n, e in events if n == "sentence"]
    assert [e["index"] for e in sent] == [0, 1, 2]
    assert [e["text"] for e in sent] == [s.text for s in answer.sentences]
    assert sent[0]["text"] == "It opened in 1937 [1]. [2]" and [c["n"] for c in sent[0]["citations"]] == [1, 2]
    for i, e in enumerate(sent):
        assert e == sentence_event(i, answer.sentences[i], answer.passages)
    c = sent[0]["citations"][0]
    assert (c["doc_id"], c["title"], c["quote"], c["start"], c["end"], c["shown"]) == (
        "bridge.md", "Golden Gate", CORPUS[0].text, 0, 38, True
    )  # fmt: skip


def test_numbers_of_unshown_passages_are_dropped_and_post_hoc_is_computed_once() -> None:
    pieces = ("Curie won [7].", " It opened", " in 1937.", " Done")
    calls: list[list[str]] = []

    def pick(sentence: str) -> tuple[int | None, float]:
        calls.append([sentence])
        return (0, 0.75) if "1937" in sentence else (None, 0.1)

    gen = FakeGenerator(["".join(pieces)], tokenizer=FakeTokenizer(words=True), stream=pieces)
    pipe = RAGPipeline(FakeRetriever(CORPUS, pad=True), gen, k=2, citations="post-hoc", post_hoc=FakeCiter(pick))
    events, answer = run_stream(pipe)
    sent = [e for n, e in events if n == "sentence"]
    assert sent[0]["citations"] == [] and sent[0]["dropped_citations"] == [7]
    assert sent[1]["post_hoc"] and [c["n"] for c in sent[1]["citations"]] == [1] and sent[1]["support"] == 0.75
    assert [e["index"] for e in sent] == [0, 1, 2]  # nothing re-sent: the final answer agreed
    assert answer.sentences[1].post_hoc and answer.sentences[1].citations == (1,)
    # Each sentence asked the citer once, though the final answer cites all three again.
    assert sorted(c[0] for c in calls) == sorted(["Curie won.", "It opened in 1937.", "Done"])


def test_settle_resends_changed_sentences_and_removes_dropped_ones() -> None:
    events, answer = run_stream(stream_pipe(("It opened in 1937 [1].", " It is red [2].")))
    assert len(final_sentences(events)) == 2
    stream = SentenceStream(lambda e: events.append(("sentence", e)))
    stream.sent = {i: e for i, e in final_sentences(events).items()}
    # As verification would: the first sentence gets support and a quote, the second is gone.
    s0 = answer.sentences[0]
    quote = Quote(1, 4, 37, CORPUS[0].text[4:37], 0.9)
    verified = type(answer)(
        answer.question, s0.text, (Sentence(s0.text, 0, s0.end, (1,), support=0.9, revised=False, quotes=(quote,)),),
        answer.passages,
    )  # fmt: skip
    before = len(events)
    stream.settle(verified)
    new = [e for _, e in events[before:]]
    assert new[0]["index"] == 0 and new[0]["support"] == 0.9 and new[0]["revised"] is False
    assert new[0]["citations"][0]["quote"] == quote.text and new[0]["citations"][0]["start"] == 4
    assert new[1] == {"index": 1, "removed": True}
    stream.settle(verified)  # nothing changed: nothing sent
    assert len(events) == before + 2


def test_constrained_text_held_back_still_gives_each_sentence() -> None:
    """Under a regex the tap holds text to whole sentences; sentences still go as they complete."""
    pieces = ("It opened", " in 1937 [1]", ". It is", " red. [2]", " It was cut [1].")
    gen = FakeGenerator(["".join(pieces)], tokenizer=FakeTokenizer(words=True), stream=pieces, regex=True)
    seen: list[tuple[str, str]] = []
    stream = SentenceStream(lambda e: seen.append(("sentence", e["text"])))
    pipe = stream.bind(RAGPipeline(FakeRetriever(CORPUS, pad=True), gen, k=2), "q")
    tap = TokenTap(gen, lambda t: seen.append(("token", t)), on_text=stream.feed)
    stream._start(pipe._build("q", CORPUS))
    tap.generate([stream._prompt.text], GenerationParams(regex=".*"))  # type: ignore[union-attr]
    assert seen == [
        ("token", "It opened in 1937 [1]."), ("sentence", "It opened in 1937 [1]."),
        ("token", " It is red. [2]"), ("sentence", "It is red. [2]"),
    ]  # fmt: skip


# -- the real server: tiny Llama on vLLM, the sample index -------------------------------------


def check_sentence_events(events: list[tuple[str, Any]], *, resent: bool | None) -> dict[str, Any]:
    """token..., sentence..., final: each sentence's first event after the tokens that hold its
    text, and the last event per index equal to the final answer's sentence. ``resent``: the
    sentences come again after the generation (verified); else each is sent exactly once."""
    names = [n for n, _ in events]
    assert names[-1] == "final" and names.count("final") == 1 and set(names[:-1]) <= {"token", "sentence"}, names
    final = events[-1][1]
    check_answer(final)
    sentences = final["sentences"]
    assert sentences, final
    tokens = ""
    first: dict[int, int] = {}
    last: dict[int, dict[str, Any]] = {}
    for pos, (name, data) in enumerate(events[:-1]):
        if name == "token":
            tokens += data["text"]
            continue
        if data["index"] not in first:
            first[data["index"]] = pos
            # A streamed sentence's words have all been streamed before it.
            words = [w for w in data["text"].replace("[", " ").replace("]", " ").split() if w.isalpha()]
            assert all(w in tokens for w in words), (data, tokens)
        last[data["index"]] = data
    assert sorted(i for i, e in last.items() if not e.get("removed")) == list(range(len(sentences)))
    shown = {p["n"] for p in final["passages"] if p["shown"]}
    for i, s in enumerate(sentences):
        e = last[i]
        assert (e["text"], e["start"], e["end"]) == (s["text"], s["start"], s["end"])
        assert [c["n"] for c in e["citations"]] == s["citations"]
        assert {k: v for k, v in e.items() if k not in ("index", "citations")} == {
            k: v for k, v in s.items() if k != "citations"
        }
        passages = {p["n"]: p for p in final["passages"]}
        for c in e["citations"]:
            p = passages[c["n"]]
            assert (c["doc_id"], c["title"], c["shown"]) == (p["doc_id"], p["title"], p["shown"])
            assert p["start"] <= c["start"] <= c["end"] <= p["end"] and c["quote"] in p["text"]
            assert c["n"] in shown or not c["shown"]
    n_sentence_events = names.count("sentence")
    if resent:
        assert n_sentence_events > len(first)
    elif resent is False:
        assert n_sentence_events == len(sentences)
    return final


@pytest.fixture(scope="module")
def api(sample_index: Path, tiny_vllm_server: Any) -> Any:
    """Abstention off: the tiny random model's answers would all be abstained."""
    with serving(settings(sample_index, llm_url=tiny_vllm_server.url, max_tokens=40, abstain=False)) as url:
        yield url


def test_server_streams_sentences_constrained(api: str) -> None:
    """Without grounding (no quotes, no abstention) each sentence goes once, as it completes;
    with the default quotes, grounding's support and quotes come as re-sent sentences."""
    final = check_sentence_events(sse(api, {"question": QUESTION, "quotes": False}), resent=False)
    assert final["citation_mode"] == "constrained"
    assert all(s["citations"] for s in final["sentences"])
    grounded = check_sentence_events(sse(api, {"question": QUESTION}), resent=True)
    assert all("support" in s for s in grounded["sentences"])


def test_server_streams_sentences_post_hoc(sample_index: Path, tiny_vllm_server: Any) -> None:
    s = settings(sample_index, llm_url=tiny_vllm_server.url, max_tokens=40, citations="post-hoc")
    with serving(s) as url:
        body = {"question": "Who discovered polonium?", "quotes": False, "abstain": False}
        final = check_sentence_events(sse(url, body), resent=False)
        assert final["citation_mode"] == "post-hoc"
        # Abstention (the server's default) and quotes: grounding re-sends what it changed, and
        # an abstention replaces the answer by one sentence (the rest are removed).
        events = sse(url, {"question": QUESTION})
        check_sentence_events(events, resent=None)


def test_server_resends_sentences_with_support_when_verified(api: str) -> None:
    events = sse(api, {"question": QUESTION, "verify": True, "max_tokens": 24, "quotes": False})
    final = check_sentence_events(events, resent=True)
    assert all(0.0 <= s["support"] <= 1.0 and isinstance(s["revised"], bool) for s in final["sentences"])
    # The sentences sent while generating carry no support; the ones re-sent after verifying do.
    first: dict[int, Any] = {}
    for name, e in events:
        if name == "sentence":
            first.setdefault(e["index"], e)
    assert all("support" not in e for e in first.values())
    last = final_sentences(events)
    assert all("support" in e and "revised" in e for e in last.values() if not e.get("removed"))


def test_server_sends_the_first_sentence_while_the_second_is_generated(sample_index: Path) -> None:
    """Over real HTTP from a streaming OpenAI-compatible server (one word per 50 ms): sentence 0
    arrives after the token that starts sentence 1 and before the last token."""
    from test_serve_faults import fake_llm

    from pipeline.generators.server import free_port

    port = free_port()
    llm = fake_llm(port, "--piece-delay", "0.05")
    try:
        s = settings(sample_index, llm_url=f"http://127.0.0.1:{port}", retriever="bm25", post_hoc=False)
        with serving(s) as url:
            events = sse(url, {"question": QUESTION, "quotes": False, "abstain": False})
    finally:
        llm.kill()
        llm.wait()
    final = check_sentence_events(events, resent=False)
    assert [s["text"] for s in final["sentences"]] == [
        "The Golden Gate Bridge opened in 1937 [1].", "It spans the Golden Gate strait [1]."
    ]  # fmt: skip
    names = [n for n, _ in events]
    first_sentence, last_token = names.index("sentence"), len(names) - 1 - names[::-1].index("token")
    assert first_sentence < last_token, names
    streamed = "".join(d["text"] for n, d in events[:first_sentence] if n == "token")
    assert streamed.rstrip().endswith("It"), streamed
