"""The HTTP API (serve.py / app.serve): real uvicorn servers on free loopback ports.

Generation goes through real vLLM over the tiny random Llama: the session's vLLM OpenAI
server as ``--llm-url``, vLLM's async engine in process (the embedded default), and a
server of this module's own that is stopped and restarted (503, then recovery). A canned
generator is used only where the model is beside the point (timeouts).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.generators.server import free_port

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "When did the Golden Gate Bridge open?"


def settings(index: Path, **kw: Any) -> Any:
    from app.serve.service import ServeSettings

    return ServeSettings(index=index, **kw)


@contextlib.contextmanager
def serving(
    s: Any, generator: Any = None, ready: bool = True, service: list[Any] | None = None, judge: Any = None
) -> Iterator[str]:
    """The app for settings ``s`` on uvicorn, on a free loopback port; its base URL.

    ``service``, when given, receives the app's CiteragService."""
    import uvicorn

    from app.serve.app import create_app
    from app.serve.service import CiteragService

    svc = CiteragService(s, generator=generator, judge=judge)
    if service is not None:
        service.append(svc)
    app = create_app(svc)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        if ready:
            wait_ready(url, headers={"Authorization": f"Bearer {s.api_key}"} if s.api_key else None)
        yield url
    finally:
        server.should_exit = True
        thread.join(60)


def wait_ready(url: str, timeout: float = 300, headers: dict[str, str] | None = None) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = httpx.get(f"{url}/readyz", headers=headers, timeout=30)
        if r.status_code == 200:
            return r.json()
        assert r.status_code == 503, r.text
        assert time.monotonic() < deadline, f"not ready: {r.json()}"
        time.sleep(0.3)


def sse(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> list[tuple[str, Any]]:
    """POST ``body`` with ``stream: true``; the (event, data) pairs in arrival order."""
    events = []
    with httpx.stream("POST", f"{url}/v1/ask", json={**body, "stream": True}, headers=headers, timeout=120) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in r.iter_lines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                events.append((name, json.loads(line[5:])))
    return events


def check_answer(answer: dict[str, Any]) -> None:
    """The body parses as the documented model and its citations are consistent."""
    from app.serve.schemas import AskResponse

    AskResponse.model_validate(answer)
    shown = {p["n"]: p for p in answer["passages"]}
    for s in answer["sentences"]:
        assert answer["answer"][s["start"] : s["end"]] == s["text"]
        assert set(s["citations"]) <= set(shown)
    for c in answer["citations"]:
        assert shown[c["n"]]["doc_id"] == c["doc_id"] and shown[c["n"]]["text"] == c["text"]


def streamed_text(final: dict[str, Any]) -> str:
    """What the token events carry: the generator's raw text (before cleaning and abstention)."""
    raw = (final.get("cleaned") or {}).get("raw_text")
    return raw if raw is not None else (final.get("draft") or {}).get("answer", final["answer"])


def check_streamed(tokens: list[str], final: dict[str, Any]) -> None:
    """The token events against the final answer. Post hoc they are exactly the generator's
    raw text. Constrained, whole sentences are sent as they complete and the rest of the
    answer at the end (pipeline.streaming.TokenTap), so they are exactly the answer."""
    streamed = "".join(tokens).strip()
    if final["citation_mode"] != "constrained":
        assert streamed == streamed_text(final)
        return
    assert streamed == (final.get("draft") or final)["answer"]


def without_timings(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != "timings"}


def test_token_tap_streams_and_stops() -> None:
    """The tap reports each piece, returns the whole generation, and closes a cancelled stream."""
    from fakes import FakeGenerator

    from pipeline.streaming import TokenTap
    from pipeline.types import GenerationParams

    seen: list[str] = []
    gen = FakeGenerator(stream=("It ", "opened ", "in 1937."))
    out = TokenTap(gen, seen.append).generate(["q"], GenerationParams())
    assert (
        seen == ["It ", "opened ", "in 1937."]
        and out[0].text == "It opened in 1937."
        and out[0].finish_reason == "stop"
    )
    gen.stream_closed = False
    seen.clear()
    out = TokenTap(gen, seen.append, cancelled=lambda: bool(seen)).generate(["q"], GenerationParams())
    assert seen == ["It "] and out[0].finish_reason == "abort" and gen.stream_closed
    # Without a stream method: one piece, the whole text; batches pass through untouched.
    plain = FakeGenerator(["Whole answer."])
    assert (
        TokenTap(plain, seen.append).generate(["q"], GenerationParams())[0].text == "Whole answer."
        and seen[-1] == "Whole answer."
    )
    assert len(TokenTap(plain, seen.append).generate(["a", "b"], GenerationParams())) == 2


def test_token_tap_holds_constrained_text_to_whole_sentences() -> None:
    """Under a regex, a sentence is reported once the next one starts; the rest stays held."""
    from fakes import FakeGenerator

    from pipeline.streaming import TokenTap
    from pipeline.types import GenerationParams

    seen: list[str] = []
    pieces = ("It opened", " in 1937 [1]", ". It is", " red. [2]", " And it was cut")
    gen = FakeGenerator(stream=pieces, regex=True)
    tap = TokenTap(gen, seen.append)
    out = tap.generate(["q"], GenerationParams(regex=".*"))
    assert out[0].text == "".join(pieces)
    assert seen == ["It opened in 1937 [1].", " It is red. [2]"] and tap.sent == "".join(seen) and tap.held
    assert TokenTap(gen, seen.append).held is False  # nothing held before a constrained call


# -- against the session's vLLM server (--llm-url) -----------------------------------------


@pytest.fixture(scope="module")
def api(sample_index: Path, tiny_vllm_server: Any) -> Iterator[str]:
    with serving(settings(sample_index, llm_url=tiny_vllm_server.url, max_tokens=24)) as url:
        yield url


def test_probes_and_openapi(api: str) -> None:
    assert httpx.get(f"{api}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{api}/readyz").json()
    assert ready["ready"] and ready["index"]["passages"] > 0 and ready["generator"]["answering"]
    doc = httpx.get(f"{api}/openapi.json").json()
    assert {"/v1/ask", "/v1/revise", "/healthz", "/readyz"} <= set(doc["paths"])
    schemas = doc["components"]["schemas"]
    assert {"AskRequest", "AskResponse", "ReviseRequest", "ReviseResponse"} <= set(schemas)
    assert {"question", "k", "retriever", "verify", "stream", "max_tokens"} <= set(schemas["AskRequest"]["properties"])
    ask_body = doc["paths"]["/v1/ask"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert ask_body["$ref"].endswith("/AskRequest")


def test_ask_is_the_cli_json(api: str, sample_index: Path, tiny_vllm_server: Any) -> None:
    """Same options, same answer object as `citerag ask --json` (which is ``to_dict``)."""
    from app.factory import build_pipeline
    from pipeline.config import Settings

    r = httpx.post(f"{api}/v1/ask", json={"question": QUESTION, "k": 3, "retriever": "bm25"}, timeout=120)
    assert r.status_code == 200, r.text
    answer = r.json()
    check_answer(answer)
    assert len(answer["passages"]) == 3 and answer["passages"][0]["doc_id"] == "golden_gate_bridge.md"
    pipe = build_pipeline(
        Settings(index=sample_index, llm_url=tiny_vllm_server.url, k=3, retriever="bm25", max_tokens=24)
    )
    try:
        from verifiers.grounding import AbstainRule, ground_with_pipeline

        draft = pipe.ask(QUESTION)
        expected = ground_with_pipeline(pipe, [draft], "default", abstain=AbstainRule())[0].to_dict()
    finally:
        pipe.generator.close()
    assert without_timings(answer) == without_timings(expected)
    # Abstention as the CLI applies it; the draft is kept, and "abstain": false returns it as the answer.
    if answer["abstained"]:
        assert answer["citations"] == [] and answer["draft"]["answer"] == draft.text
    r = httpx.post(
        f"{api}/v1/ask", json={"question": QUESTION, "k": 3, "retriever": "bm25", "abstain": False}, timeout=120
    )
    kept = r.json()
    check_answer(kept)
    assert kept["abstained"] is False and kept["answer"] == draft.text


def stream_tokens_then_final(api: str) -> tuple[list[str], dict[str, Any]]:
    events = sse(api, {"question": QUESTION})
    names = [n for n, _ in events]
    assert names.count("final") == 1 and names[-1] == "final", names
    tokens = [d["text"] for n, d in events if n == "token"]
    final = events[-1][1]
    # Post hoc the raw text streams piece by piece; constrained, sentence by sentence (the
    # tiny model's answer may be one sentence, sent whole).
    assert len(tokens) >= (1 if final["citation_mode"] == "constrained" else 2), names
    assert {"token"} <= set(names[:-1]) <= {"token", "sentence"}, names  # sentence events: test_stream_sentences.py
    check_answer(final)
    plain = httpx.post(f"{api}/v1/ask", json={"question": QUESTION}, timeout=120).json()
    assert without_timings(plain) == without_timings(final)
    return tokens, final


def test_stream_sends_tokens_then_the_final_answer(api: str) -> None:
    """The default here (a vLLM server) is constrained decoding (see ``check_streamed``)."""
    tokens, final = stream_tokens_then_final(api)
    assert final["citation_mode"] == "constrained"
    check_streamed(tokens, final)


def test_stream_of_post_hoc_answers_is_the_raw_text(sample_index: Path, tiny_vllm_server: Any) -> None:
    """Post hoc, the token events carry exactly the generator's raw text."""
    s = settings(sample_index, llm_url=tiny_vllm_server.url, max_tokens=24, citations="post-hoc")
    with serving(s) as url:
        tokens, final = stream_tokens_then_final(url)
    assert final["citation_mode"] == "post-hoc"
    check_streamed(tokens, final)


def test_concurrent_requests(api: str) -> None:
    questions = [QUESTION, "Who discovered polonium?", "How tall is Mount Everest?", "What is photosynthesis?"] * 2
    with ThreadPoolExecutor(8) as pool:
        rs = list(pool.map(lambda q: httpx.post(f"{api}/v1/ask", json={"question": q}, timeout=120), questions))
    assert [r.status_code for r in rs] == [200] * 8
    for q, r in zip(questions, rs):
        assert r.json()["question"] == q
    assert rs[0].json()["answer"] == rs[4].json()["answer"]  # greedy: batching does not change answers


def test_verify_streams_support_in_the_final_event(api: str) -> None:
    events = sse(api, {"question": QUESTION, "verify": True, "max_tokens": 12, "abstain": False})
    final = events[-1][1]
    assert events[-1][0] == "final"
    check_answer(final)
    assert final["verification"]["checked"] == len(final["verification"]["sentences"])
    for s in final["sentences"]:
        assert 0.0 <= s["support"] <= 1.0 and isinstance(s["revised"], bool)


def test_revise(api: str) -> None:
    from app.serve.schemas import ReviseResponse

    text = "The Golden Gate Bridge opened in 1937."
    r = httpx.post(f"{api}/v1/revise", json={"text": text, "samples": 0}, timeout=300)
    assert r.status_code == 200, r.text
    body = r.json()
    ReviseResponse.model_validate(body)
    assert body["original"] == text and len(body["claims"]) == 1


def test_attribute_and_eval_routes(api: str) -> None:
    """The optional routes over ``eval`` (present when eval.saliency / eval.scoring import)."""
    endpoints = httpx.get(f"{api}/v1/info").json()["endpoints"]
    if "/v1/attribute" not in endpoints and "/v1/eval" not in endpoints:
        pytest.skip("eval.saliency and eval.scoring are not importable")
    answer = httpx.post(f"{api}/v1/ask", json={"question": QUESTION, "k": 2}, timeout=120).json()
    if "/v1/attribute" in endpoints:
        r = httpx.post(
            f"{api}/v1/attribute", json={"answer": answer, "methods": ["loo"], "level": "sentence"}, timeout=300
        )
        assert r.status_code == 200, r.text
        report = r.json()
        scores = report["methods"]["loo"]["scores"]
        assert report["sources"] and len(scores) == len(report["sentences"]) == len(answer["sentences"])
        assert all(len(row) == len(report["sources"]) for row in scores)
        r = httpx.post(f"{api}/v1/attribute", json={"answer": answer, "methods": ["nope"]}, timeout=60)
        assert r.status_code == 422 and "nope" in r.json()["error"]["message"]
    if "/v1/eval" in endpoints:
        r = httpx.post(f"{api}/v1/eval", json={"predictions": [answer], "format": "ask"}, timeout=300)
        assert r.status_code == 200, r.text
        metrics = r.json()
        assert metrics["format"] == "ask" and "citation" in metrics and metrics["judge"]["name"] == "default"
        r = httpx.post(f"{api}/v1/eval", json={"predictions": [answer, {"question": "q"}]}, timeout=60)
        assert r.status_code == 422 and r.json()["error"]["message"].startswith(
            "predictions[1]: cannot tell the format"
        )


def test_documents_window(api: str) -> None:
    answer = httpx.post(f"{api}/v1/ask", json={"question": QUESTION, "k": 1}, timeout=120).json()
    p = answer["passages"][0]
    doc = httpx.get(
        f"{api}/v1/documents/{p['doc_id']}", params={"start": p["start"], "end": p["end"], "context": 50}
    ).json()
    a, b = p["start"] - doc["offset"], p["end"] - doc["offset"]
    assert doc["text"][a:b] == p["text"]
    r = httpx.get(f"{api}/v1/documents/nope.md", params={"start": 0, "end": 1})
    assert r.status_code == 404 and "nope.md" in r.json()["error"]["message"]


def test_limits(api: str) -> None:
    r = httpx.post(f"{api}/v1/ask", json={"question": "why " * 1000})
    assert r.status_code == 422
    assert "at most 2000" in r.json()["error"]["message"] and "--max-question-chars" in r.json()["error"]["message"]
    r = httpx.post(f"{api}/v1/ask", json={"question": "why " * 1000, "stream": True})
    assert r.status_code == 422
    r = httpx.post(f"{api}/v1/ask", json={"question": "  "})
    assert r.status_code == 422 and "empty" in r.json()["error"]["message"]
    r = httpx.post(f"{api}/v1/ask", json={"question": "x", "k": 0})
    assert r.status_code == 422 and r.json()["error"]["message"].startswith("invalid request: k:")
    r = httpx.post(f"{api}/v1/ask", json={"question": "x", "colour": "red"})
    assert r.status_code == 422 and "colour" in r.json()["error"]["message"]
    big = json.dumps({"question": "x", "pad": "y" * (2 << 20)})
    r = httpx.post(f"{api}/v1/ask", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "--max-body-bytes" in r.json()["error"]["message"]


def test_openai_generator_streams_what_it_generates(tiny_vllm_server: Any) -> None:
    from pipeline.generators.openai_http import OpenAIGenerator
    from pipeline.types import GenerationParams

    params = GenerationParams(max_tokens=20)
    with OpenAIGenerator(tiny_vllm_server.url) as gen:
        whole = gen.generate(["The capital of France is"], params)[0]
        chunks = list(gen.stream("The capital of France is", params))
        assert len(chunks) > 1 and "".join(c.text for c in chunks) == whole.text
        assert chunks[-1].finish_reason == whole.finish_reason != ""
        early = gen.stream("The capital of France is", params)
        next(early)
        early.close()  # closing mid-stream aborts that request; the client keeps working
        assert gen.generate(["The capital of France is"], params)[0].text == whole.text


# -- auth ------------------------------------------------------------------------------------


def test_bearer_token_auth(sample_index: Path, tiny_vllm_server: Any) -> None:
    s = settings(
        sample_index, llm_url=tiny_vllm_server.url, api_key="s3cret", retriever="bm25", post_hoc=False, max_tokens=8
    )
    good = {"Authorization": "Bearer s3cret"}
    with serving(s) as url:
        assert httpx.get(f"{url}/healthz").status_code == 200
        for method, path in [("GET", "/readyz"), ("GET", "/openapi.json"), ("GET", "/"), ("GET", "/v1/info"),
                             ("POST", "/v1/ask"), ("POST", "/v1/revise"), ("GET", "/static/app.js")]:  # fmt: skip
            for headers in (None, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
                r = httpx.request(method, f"{url}{path}", json={"question": "x"}, headers=headers)
                assert r.status_code == 401, (path, headers)
                assert r.headers["www-authenticate"] == "Bearer"
        r = httpx.post(f"{url}/v1/ask", json={"question": QUESTION}, headers=good, timeout=120)
        assert r.status_code == 200 and r.json()["question"] == QUESTION
        assert httpx.get(f"{url}/openapi.json", headers=good).status_code == 200
        # The web page: the key, once entered, is kept in a cookie.
        with httpx.Client(base_url=url) as browser:
            assert browser.post("/login", data={"key": "wrong"}).status_code == 401
            r = browser.post("/login", data={"key": "s3cret"})
            assert r.status_code == 303
            assert browser.get("/").status_code == 200 and browser.get("/readyz").status_code == 200


def test_request_timeout(sample_index: Path) -> None:
    from fakes import FakeGenerator

    s = settings(sample_index, retriever="bm25", post_hoc=False, request_timeout=0.5)
    with serving(s, generator=FakeGenerator(["Soon [1]."], delay=3)) as url:
        r = httpx.post(f"{url}/v1/ask", json={"question": QUESTION}, timeout=30)
        assert r.status_code == 504 and "--request-timeout" in r.json()["error"]["message"]
        r = httpx.post(f"{url}/v1/ask", json={"question": QUESTION, "stream": True}, timeout=30)
        assert r.status_code == 504


# -- the generator goes away and comes back -------------------------------------------------


def test_generator_down_gives_503_and_the_server_recovers(
    sample_index: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    pytest.importorskip("vllm")
    from pipeline.generators.server import start_vllm_server

    port = free_port()
    llm = start_vllm_server(str(tiny_model_dir), port=port, log_file=tmp_path / "vllm-1.log").wait_healthy(300)
    try:
        s = settings(sample_index, llm_url=llm.url, retriever="bm25", post_hoc=False, max_tokens=8)
        with serving(s) as url:
            assert httpx.post(f"{url}/v1/ask", json={"question": QUESTION}, timeout=120).status_code == 200
            llm.stop()
            for body in ({"question": QUESTION}, {"question": QUESTION, "stream": True}):
                r = httpx.post(f"{url}/v1/ask", json=body, timeout=120)
                assert r.status_code == 503, r.text
                err = r.json()["error"]
                assert err["type"] == "GeneratorUnavailableError" and llm.url in err["message"]
            r = httpx.get(f"{url}/readyz", timeout=30)
            assert r.status_code == 503 and llm.url in r.json()["message"]
            assert httpx.get(f"{url}/healthz").status_code == 200
            llm = start_vllm_server(str(tiny_model_dir), port=port, log_file=tmp_path / "vllm-2.log").wait_healthy(300)
            wait_ready(url, timeout=30)
            r = httpx.post(f"{url}/v1/ask", json={"question": QUESTION}, timeout=120)
            assert r.status_code == 200, r.text
            assert r.json()["question"] == QUESTION
    finally:
        llm.stop()


# -- the embedded default: vLLM's async engine in this process --------------------------------


def test_embedded_async_engine_batches_concurrent_requests(sample_index: Path, tiny_model_dir: Path) -> None:
    pytest.importorskip("vllm")
    from pipeline.generators.vllm_async import AsyncVLLMGenerator

    s = settings(sample_index, model=str(tiny_model_dir), retriever="bm25", post_hoc=False, max_tokens=48)
    box: list[Any] = []
    with serving(s, service=box) as url:
        assert httpx.get(f"{url}/readyz").json()["generator"] == {"backend": "vllm", "answering": True}
        gen = box[0].generator
        assert isinstance(gen, AsyncVLLMGenerator)
        # Watch the engine while 6 requests are in flight: they must be in it together.
        seen: list[int] = []
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                seen.append(gen.engine.get_num_unfinished_requests())
                time.sleep(0.005)

        watcher = threading.Thread(target=watch)
        watcher.start()
        questions = [QUESTION, "Who discovered polonium?", "How tall is Mount Everest?"] * 2
        try:
            with ThreadPoolExecutor(6) as pool:
                rs = list(pool.map(lambda q: httpx.post(f"{url}/v1/ask", json={"question": q}, timeout=300), questions))
        finally:
            stop.set()
            watcher.join()
        assert [r.status_code for r in rs] == [200] * 6
        assert max(seen) >= 2, f"requests never overlapped in the engine (at most {max(seen)} in flight)"
        assert rs[0].json()["answer"] == rs[3].json()["answer"]
        events = sse(url, {"question": QUESTION})
        names = [n for n, _ in events]
        assert names[-1] == "final" and len(names) >= 2 and {"token"} <= set(names[:-1]) <= {"token", "sentence"}
        check_streamed([d["text"] for n, d in events[:-1] if n == "token"], events[-1][1])
        assert events[-1][1]["answer"] == rs[0].json()["answer"]
    assert gen._engine is None  # the server's shutdown closed the engine it started


# -- the command line ----------------------------------------------------------------------------


def test_serve_py_and_citerag_serve_start_the_server(sample_index: Path, tiny_vllm_server: Any, tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve", "--help"], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0 and "--llm-url" in out.stdout and "--api-key" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "app.cli", "serve", "--index", str(tmp_path / "nope")],
                         capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert bad.returncode == 3 and f"citerag index PATH --index {tmp_path / 'nope'}" in bad.stderr
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "serve.py"), "--index", str(sample_index), "--llm-url", tiny_vllm_server.url,
         "--port", str(port), "--retriever", "bm25", "--no-post-hoc", "--max-tokens", "8"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(0.5)
        r = httpx.post(f"{url}/v1/ask", json={"question": QUESTION}, timeout=120)
        assert r.status_code == 200 and r.json()["passages"][0]["doc_id"] == "golden_gate_bridge.md"
        assert "<title>citerag</title>" in httpx.get(url).text
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def test_server_settings_reach_the_pipeline(sample_index: Path) -> None:
    """The server's pipeline comes from the factory, so the options `ask` honours reach it."""
    from fakes import FakeGenerator

    from app.serve.service import CiteragService

    s = settings(sample_index, retriever="bm25", post_hoc=False, max_doc_tokens=40, iterative=True, stride=8,
                 query_tokens=16, temperature=0.5, citations="use-aware", max_tokens=16)  # fmt: skip
    service = CiteragService(s, generator=FakeGenerator(["It opened in 1937 [1]."]))
    service.load()
    pipe = service.pipeline
    assert pipe.prompt.max_doc_tokens == 40
    assert pipe.params.temperature == 0.5 and pipe.params.max_tokens == 16
    assert pipe.iterative is not None and (pipe.iterative.stride, pipe.iterative.query_tokens) == (8, 16)
    assert pipe.citations == "use-aware"


def test_citerag_serve_options_reach_the_settings(sample_index: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    import app.serve.cli
    from app.cli import cli

    seen: list[Any] = []
    monkeypatch.setattr(app.serve.cli, "run_server", lambda s, **kw: seen.append(s))
    result = CliRunner().invoke(cli, ["serve", "--index", str(sample_index), "--citations", "constrained",
                                      "--iterative", "--stride", "8", "--llm-api-key", "llm-key",
                                      "--api-key", "server-key", "--host", "0.0.0.0",
                                      "--allowed-hosts", "rag.example.org, lan-box", "--max-eval-pairs", "50",
                                      "--grace-seconds", "2.5"])  # fmt: skip
    assert result.exit_code == 0, result.output
    (s,) = seen
    assert (s.citations, s.iterative, s.stride) == ("constrained", True, 8)
    assert (s.llm_api_key, s.api_key) == ("llm-key", "server-key")
    assert (s.host, s.allowed_hosts, s.max_eval_pairs, s.grace_seconds) == (
        "0.0.0.0",
        ("rag.example.org", "lan-box"),
        50,
        2.5,
    )
