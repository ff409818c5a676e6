"""The OpenAI-compatible routes (``/v1/models``, ``/v1/chat/completions``) through the official
``openai`` client and LangChain's ``ChatOpenAI``, against real servers (uvicorn, the sample
index, real retrieval and grounding): generation by real vLLM over the tiny random Llama, and,
where the words of the answer must be known (multi-turn retrieval, post-hoc markers), by a
canned generator that records its prompts. The message-to-query rule and the helpers that
shape answers are also tested alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_serve import QUESTION, serving, settings

openai = pytest.importorskip("openai")

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "pipeline" / "sample_corpus"
MARKER = re.compile(r"\[(\d+)\]")


def client(url: str, key: str = "unused") -> Any:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=120)


def ask(url: str, question: str, **kw: Any) -> dict[str, Any]:
    r = httpx.post(f"{url}/v1/ask", json={"question": question, **kw}, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


def check_citations(url: str, content: str, citations: list[dict[str, Any]]) -> None:
    """The markers in ``content`` are exactly the cited numbers, and every citation is a real span
    of its document, its quote inside it."""
    assert {int(n) for n in MARKER.findall(content)} == {c["n"] for c in citations}
    for c in citations:
        path = CORPUS / c["doc_id"]
        if path.suffix in (".md", ".txt"):
            assert path.read_text(encoding="utf-8")[c["start"] : c["end"]] == c["text"]
        doc = httpx.get(
            f"{url}/v1/documents/{c['doc_id']}", params={"start": c["start"], "end": c["end"], "context": 0}
        ).json()
        assert doc["text"] == c["text"]
        assert c["start"] <= c["quote_start"] <= c["quote_end"] <= c["end"]
        assert c["text"][c["quote_start"] - c["start"] : c["quote_end"] - c["start"]] == c["quote"]
        assert c["page"] is None  # the sample corpus has no pages


# -- the message rule and the answer's shape, alone --------------------------------------------


def test_chat_query_rule() -> None:
    from app.serve.chat_query import ChatInputError, Turn, chat_query

    turns = [
        Turn("system", "Be brief."),
        Turn("user", "Tell me about the Golden Gate Bridge."),
        Turn("assistant", "It is a suspension bridge [1]."),
        Turn("user", "Who designed it?"),
        Turn("assistant", "Joseph Strauss [2]."),
        Turn("user", "  When did it open? "),
    ]
    q = chat_query(turns)
    assert q.question == "When did it open?"
    assert q.retrieval_query == "When did it open?\nWho designed it?\nTell me about the Golden Gate Bridge."
    assert chat_query(turns, context_turns=1).retrieval_query == "When did it open?\nWho designed it?"
    assert chat_query([Turn("user", "Hi?")]).retrieval_query == "Hi?"
    with pytest.raises(ChatInputError) as err:
        chat_query([Turn("system", "x"), Turn("assistant", "y")])
    assert err.value.param == "messages" and err.value.http_status == 400
    with pytest.raises(ChatInputError) as err:
        chat_query([Turn("user", "a question"), Turn("user", "  ")])
    assert err.value.param == "messages[1].content"


def test_retrieval_query_replaces_only_the_question() -> None:
    from fakes import FakeRetriever

    from app.serve.chat_query import RetrievalQuery

    inner = FakeRetriever(rank="fixed")
    RetrievalQuery(inner, "When did it open?", "When did it open?\nThe bridge").retrieve(
        ["When did it open?", "When did it open? It opened in"], 3
    )
    assert inner.calls == [["When did it open?\nThe bridge", "When did it open? It opened in"]]


def test_post_hoc_markers_go_into_the_content() -> None:
    from app.serve.openai_chat import content_of

    text = "It opened in 1937 [1]. It is red. It spans the strait"
    answer = {
        "answer": text,
        "sentences": [
            {"text": "It opened in 1937 [1].", "start": 0, "end": 22, "citations": [1], "post_hoc": False},
            {"text": "It is red.", "start": 23, "end": 33, "citations": [2, 3], "post_hoc": True},
            {"text": "It spans the strait", "start": 34, "end": 53, "citations": [1], "post_hoc": True},
        ],
    }
    assert content_of(answer) == "It opened in 1937 [1]. It is red [2][3]. It spans the strait [1]"


def test_sse_reader_splits_events_across_chunks() -> None:
    from app.serve.openai_chat import SSEReader

    r = SSEReader()
    assert r.feed(b'event: token\ndata: {"text": "a"}\n\nevent: fin') == [("token", {"text": "a"})]
    assert r.feed(b'al\ndata: {"answer": "b"}\n\n') == [("final", {"answer": "b"})]


# -- the official client against a real server (vLLM's tiny Llama) -------------------------------


@pytest.fixture(scope="module")
def api(sample_index: Path, tiny_vllm_server: Any) -> Iterator[str]:
    # No abstention: the tiny model's drafts keep their citations, so there is something to check.
    s = settings(sample_index, llm_url=tiny_vllm_server.url, max_tokens=24, abstain=False, max_tokens_limit=64)
    with serving(s) as url:
        yield url


def test_models(api: str) -> None:
    c = client(api)
    assert [m.id for m in c.models.list().data] == ["citerag"]
    assert c.models.retrieve("citerag").owned_by == "citerag"
    with pytest.raises(openai.NotFoundError) as err:
        c.models.retrieve("gpt-4o")
    assert err.value.code == "model_not_found"


def test_completion_is_the_ask_answer_with_citations(api: str) -> None:
    out = client(api).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": QUESTION}])
    assert out.object == "chat.completion" and out.model == "citerag" and out.id.startswith("chatcmpl-")
    choice = out.choices[0]
    assert choice.message.role == "assistant" and choice.finish_reason in ("stop", "length")
    content = choice.message.content
    expected = ask(api, QUESTION)
    assert content == expected["answer"]  # constrained decoding: every sentence carries its marker
    citations = out.model_extra["citations"]
    assert citations and [c["n"] for c in citations] == [c["n"] for c in expected["citations"]]
    check_citations(api, content, citations)
    shown = {p["n"]: p for p in expected["passages"]}
    for c in citations:  # each cited passage is one the generator was shown under that number
        assert (shown[c["n"]]["doc_id"], shown[c["n"]]["start"], shown[c["n"]]["text"]) == (
            c["doc_id"], c["start"], c["text"])  # fmt: skip
    assert out.usage.prompt_tokens == expected["prompt_tokens"] and 0 < out.usage.completion_tokens
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens


def test_stream_sends_chunks_then_citations(api: str) -> None:
    stream = client(api).chat.completions.create(
        model="citerag", messages=[{"role": "user", "content": QUESTION}], stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1
    final = finals[0]
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert deltas and chunks.index(final) > 0
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0  # include_usage
    whole = client(api).chat.completions.create(model="citerag", messages=[{"role": "user", "content": QUESTION}])
    assert "".join(deltas).strip() == whole.choices[0].message.content == final.model_extra["final_content"]
    assert final.model_extra["citations"] == whole.model_extra["citations"]
    check_citations(api, "".join(deltas), final.model_extra["citations"])


def test_text_parts_multi_turn_and_ignored_fields(api: str) -> None:
    c = client(api)
    parts = c.chat.completions.create(
        model="citerag",
        messages=[{"role": "user", "content": [{"type": "text", "text": QUESTION}]}],
        top_p=0.5, user="someone", extra_body={"logit_bias": {}, "whatever": [1, 2]},
    )  # fmt: skip
    plain = c.chat.completions.create(model="citerag", messages=[{"role": "user", "content": QUESTION}])
    assert parts.choices[0].message.content == plain.choices[0].message.content
    turns = c.chat.completions.create(
        model="citerag",
        messages=[
            {"role": "system", "content": "You answer questions."},
            {"role": "user", "content": "Tell me about the Golden Gate Bridge."},
            {"role": "assistant", "content": plain.choices[0].message.content},
            {"role": "user", "content": "When did it open?"},
        ],
        max_completion_tokens=16,
    )
    check_citations(api, turns.choices[0].message.content, turns.model_extra["citations"])


def test_bad_requests_are_openai_400s(api: str) -> None:
    c = client(api)
    user = {"role": "user", "content": QUESTION}
    cases = [
        ({"messages": [{"role": "system", "content": "hi"}]}, "messages"),
        ({"messages": [{"role": "user", "content": "   "}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": 42}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
         "messages[0].content[0]"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"messages": []}, "messages"),
        ({"messages": [user], "n": 2}, "n"),
        ({"messages": [user], "max_tokens": 100000}, "max_tokens"),
        ({"messages": [user], "temperature": 3}, "temperature"),
        ({"messages": [user], "stream": "yes"}, "stream"),
        ({"messages": [{"role": "user", "content": "why " * 1000}]}, None),
    ]  # fmt: skip
    for body, param in cases:
        with pytest.raises(openai.BadRequestError) as err:
            c.chat.completions.create(model="citerag", **body)
        e = err.value
        assert e.status_code == 400 and e.type == "invalid_request_error" and e.param == param, (body, e.body)
        assert set(e.response.json()["error"]) == {"message", "type", "param", "code"}
    # The same refusal when streaming (checked before the first event).
    with pytest.raises(openai.BadRequestError):
        c.chat.completions.create(model="citerag", messages=[{"role": "user", "content": ""}], stream=True)
    r = httpx.post(f"{api}/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    with pytest.raises(openai.APIStatusError) as err:  # a body over --max-body-bytes
        c.chat.completions.create(model="citerag", messages=[user], extra_body={"pad": "y" * (2 << 20)})
    assert err.value.status_code == 413 and err.value.code == "request_too_large"


def test_openapi_documents_the_routes(api: str) -> None:
    paths = httpx.get(f"{api}/openapi.json").json()["paths"]
    assert {"/v1/models", "/v1/models/{model_id}", "/v1/chat/completions"} <= set(paths)
    assert "/v1/chat/completions" in httpx.get(f"{api}/v1/info").json()["endpoints"]


# -- LangChain's ChatOpenAI pointed at citerag ---------------------------------------------------


def test_langchain_chat_openai_invoke_and_stream(api: str) -> None:
    pytest.importorskip("langchain_openai")
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(base_url=f"{api}/v1", api_key="unused", model="citerag", temperature=0, max_retries=0)
    expected = client(api).chat.completions.create(model="citerag", messages=[{"role": "user", "content": QUESTION}])
    text = expected.choices[0].message.content
    reply = llm.invoke(QUESTION)
    assert reply.content == text and MARKER.search(reply.content)
    assert reply.usage_metadata["input_tokens"] == expected.usage.prompt_tokens
    streamed = "".join(chunk.content for chunk in llm.stream(QUESTION))
    assert streamed.strip() == text


# -- auth ---------------------------------------------------------------------------------------


def test_bearer_key(sample_index: Path, tiny_vllm_server: Any) -> None:
    s = settings(sample_index, llm_url=tiny_vllm_server.url, api_key="s3cret", max_tokens=8, retriever="bm25")
    with serving(s) as url:
        with pytest.raises(openai.AuthenticationError) as err:
            client(url, "wrong").chat.completions.create(model="citerag", messages=[{"role": "user", "content": "q"}])
        assert err.value.code == "invalid_api_key" and err.value.response.headers["www-authenticate"] == "Bearer"
        r = httpx.post(
            f"{url}/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "q"}]}
        )
        assert r.status_code == 401 and set(r.json()["error"]) == {"message", "type", "param", "code"}
        with pytest.raises(openai.AuthenticationError):
            client(url, "wrong").models.list()
        good = client(url, "s3cret")
        assert good.models.list().data[0].id == "citerag"
        out = good.chat.completions.create(model="citerag", messages=[{"role": "user", "content": QUESTION}])
        assert out.choices[0].message.content
        # The rest of the API keeps its own error shape.
        r = httpx.post(f"{url}/v1/ask", json={"question": QUESTION})
        assert r.status_code == 401 and r.json()["error"]["status"] == 401


# -- a canned generator: what the prompt held, and post-hoc markers --------------------------------


def test_follow_up_retrieves_with_the_earlier_turns(sample_index: Path) -> None:
    """The generator is asked the last question, over passages found with the earlier user turn;
    a post-hoc citation gets its marker in the content."""
    from fakes import FakeGenerator

    gen = FakeGenerator(["The Golden Gate Bridge opened to pedestrians on May 27, 1937."])
    s = settings(sample_index, retriever="bm25", citations="post-hoc", abstain=False, k=1)
    with serving(s, generator=gen) as url:
        c = client(url)
        alone = c.chat.completions.create(model="x", messages=[{"role": "user", "content": "When did it open?"}])
        prompt_alone = gen.prompts[-1]
        c.chat.completions.create(
            model="x",
            messages=[
                {"role": "user", "content": "Tell me about Marie Curie and polonium."},
                {"role": "assistant", "content": "The Golden Gate Bridge is orange."},  # not in the query
                {"role": "user", "content": "When did it open?"},
            ],
        )
        prompt = gen.prompts[-1]
    assert "Golden Gate" in prompt_alone and "Curie" not in prompt_alone
    assert "Curie" in prompt and "Golden Gate" not in prompt
    assert "Tell me about" not in prompt and "Question: When did it open?" in prompt
    # Post hoc: the generator wrote no marker; the content gets one for each attached citation.
    content = alone.choices[0].message.content
    assert alone.model_extra["citations"] and content.startswith("The Golden Gate Bridge opened")
    assert content.endswith(" [1].")
    assert [int(n) for n in MARKER.findall(content)] == [x["n"] for x in alone.model_extra["citations"]] == [1]
