"""The HTTP server under faults and hostile requests (issue 12), on real uvicorn servers.

* cancellation: a request that times out or whose client leaves keeps its worker thread
  (``--threads``) until its work stops, and the work stops at the next stage;
* ``POST /v1/eval`` refuses more judge pairs than ``--max-eval-pairs`` before judging;
* Host headers (DNS rebinding) and the login cookie;
* a real ``citerag serve`` process drained by SIGTERM with a request in flight;
* the generator server killed in the middle of a streamed answer, then back.

The generator is a canned fake where the model is beside the point, and a slow stdlib
OpenAI-compatible server (tests/fake_llm_server.py) where it must be killed or caught mid-answer.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fake_llm_server import start_process
from fakes import FakeGenerator, FakeJudge
from test_serve import QUESTION, ROOT, serving, settings

from pipeline.generators.server import free_port

SECOND = "Who discovered polonium?"


def wait_for(cond: Callable[[], bool], timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def ask(url: str, question: str, timeout: float = 60, **headers: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/ask", json={"question": question}, headers=headers, timeout=timeout)


# -- cancellation reaches the work, and the work keeps its thread ------------------------------


@pytest.mark.parametrize("leave", ["timeout", "disconnect"])
def test_cancelled_work_keeps_its_thread_and_stops_at_the_next_stage(sample_index: Path, leave: str) -> None:
    """``--threads 1``: the first request's generation blocks; it gets its 504 (or its client
    leaves), yet the second request waits until the first's work has ended, never beside it;
    and the first's work stops at the next stage (no grounding: the judge never sees it)."""
    gate = threading.Event()

    def reply(prompt: str, params: Any) -> str:
        if SECOND in prompt:
            return "Marie Curie discovered polonium [1]."
        gate.wait(60)
        return "It opened in 1937 [1]."

    gen, judge = FakeGenerator(reply), FakeJudge()
    timeout = 2.0 if leave == "timeout" else 60.0
    s = settings(sample_index, retriever="bm25", post_hoc=False, threads=1, request_timeout=timeout)
    with serving(s, generator=gen, judge=judge) as url, ThreadPoolExecutor(2) as pool:
        first = pool.submit(ask, url, QUESTION, 30 if leave == "timeout" else 1.0)
        wait_for(lambda: gen.active == 1, what="the first request to reach the generator")
        if leave == "timeout":
            r = first.result()
            assert r.status_code == 504 and "--request-timeout" in r.json()["error"]["message"]
        else:
            with pytest.raises(httpx.ReadTimeout):
                first.result()
        second = pool.submit(ask, url, SECOND)
        time.sleep(0.5)
        # The first's work still runs (blocked in the generator): the second has no thread yet.
        assert not second.done() and len(gen.batches) == 1 and gen.active == 1
        gate.set()
        r = second.result()
        assert r.status_code == 200, r.text
        assert r.json()["question"] == SECOND
    assert gen.peak_active == 1, "the two requests ran in the generator at once"
    assert [SECOND in batch[0] for batch in gen.batches] == [False, True]
    claims = [claim for _, claim in judge.pairs]
    assert any("polonium" in c for c in claims), "the second request was grounded"
    assert not any("1937" in c for c in claims), "the cancelled request went on to grounding"


def test_work_pool_bounds_threads_and_cancels() -> None:
    """The pool alone: a timed-out call holds its slot until its thread ends; its token is set."""
    import asyncio

    from app.serve.work import RequestTimeout, WorkPool

    release = threading.Event()
    seen: list[threading.Event] = []

    def slow(cancel: threading.Event) -> str:
        seen.append(cancel)
        release.wait(10)
        return "slow"

    async def scenario() -> None:
        pool = WorkPool(1)
        with pytest.raises(RequestTimeout):
            await pool.run(slow, 0.2)
        assert seen[0].is_set() and pool.running == 1
        second = asyncio.ensure_future(pool.run(lambda cancel: "second", 5))
        await asyncio.sleep(0.2)
        assert not second.done()  # the slot is still the first's
        release.set()
        assert await second == "second"
        assert pool.peak == 1 and pool.running == 0

    asyncio.run(scenario())


def test_work_pool_drain_refuses_new_work_and_stops_the_rest_after_the_grace() -> None:
    import asyncio

    from app.serve.work import ServerDrainingError, WorkPool

    release = threading.Event()

    async def scenario() -> None:
        pool = WorkPool(1)
        running = asyncio.ensure_future(pool.run(lambda cancel: release.wait(10), 30))
        await asyncio.sleep(0.1)
        queued = asyncio.ensure_future(pool.run(lambda cancel: "queued", 30))
        drain = asyncio.ensure_future(pool.drain(0.5))
        await asyncio.sleep(0.05)
        with pytest.raises(ServerDrainingError, match="takes no new requests"):
            await pool.run(lambda cancel: "new", 5)
        t0 = time.monotonic()
        for request in (running, queued):
            with pytest.raises(ServerDrainingError, match="--grace-seconds"):
                await request
        assert time.monotonic() - t0 < 2 and drain.done()
        assert pool.running == 1  # the first thread is still blocked; it keeps its slot
        release.set()
        await asyncio.sleep(0.2)
        assert pool.running == 0 and not pool._slots.locked()  # every slot came back

    asyncio.run(scenario())


# -- POST /v1/eval: a cap on judge pairs -----------------------------------------------------------


def test_eval_refuses_more_judge_pairs_than_max_eval_pairs(sample_index: Path) -> None:
    from app.serve.routes_eval import count_pairs
    from eval.formats import predictions_from_rows
    from eval.scoring import EvalConfig

    docs = [{"title": f"Doc {i}", "text": f"Document {i} says that the bridge opened in 1937."} for i in range(5)]
    row = {"question": "When did it open?", "output": "The bridge opened in 1937 [1][2]. It is red [3].", "docs": docs}
    # 2 sentences x 5 documents (attribution) + (joint, 2 alone, 2 without) + (joint).
    assert count_pairs(predictions_from_rows([row]).examples, EvalConfig(threshold=0.5)) == 10 + 5 + 1
    judge = FakeJudge()
    s = settings(sample_index, retriever="bm25", post_hoc=False, max_eval_pairs=40)
    with serving(s, generator=FakeGenerator(["x"]), judge=judge) as url:
        r = httpx.post(f"{url}/v1/eval", json={"predictions": [row, row]}, timeout=60)
        assert r.status_code == 200, r.text
        assert 0 < r.json()["judge"]["pairs"] <= 32 and len(judge.pairs) <= 32
        calls = len(judge.calls)
        r = httpx.post(f"{url}/v1/eval", json={"predictions": [row, row, row]}, timeout=60)
        assert r.status_code == 413, r.text
        err = r.json()["error"]
        assert err["type"] == "TooManyPairsError" and "48" in err["message"] and "--max-eval-pairs" in err["message"]
        assert len(judge.calls) == calls, "judge work was done before the cap was checked"
        r = httpx.post(f"{url}/v1/eval", json={"predictions": [row, row, row], "attribution": False}, timeout=60)
        assert r.status_code == 200, r.text
        assert httpx.get(f"{url}/v1/info").json()["limits"]["max_eval_pairs"] == 40


# -- Host headers (DNS rebinding) -----------------------------------------------------------------


def test_loopback_server_without_key_answers_only_localhost_hosts(sample_index: Path) -> None:
    gen = FakeGenerator(["It opened in 1937 [1]."])
    s = settings(sample_index, retriever="bm25", post_hoc=False, abstain=False)
    with serving(s, generator=gen) as url:
        port = url.rsplit(":", 1)[1]
        doc = f"{url}/v1/documents/golden_gate_bridge.md?start=0&end=20"
        for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.nip.io", "localhost.evil.example", "[::2]"):
            for r in (ask(url, QUESTION, Host=host), httpx.get(doc, headers={"Host": host})):
                assert r.status_code == 400, (host, r.text)
                err = r.json()["error"]
                assert err["type"] == "HostNotAllowed" and "--allowed-hosts" in err["message"], err
        assert not gen.batches, "a request with a forged Host reached the generator"
        for host in ("localhost", f"localhost:{port}", f"127.0.0.1:{port}", "[::1]:8080", "LOCALHOST"):
            assert ask(url, QUESTION, Host=host).status_code == 200, host
            assert httpx.get(doc, headers={"Host": host}).status_code == 200, host
    with serving(settings(sample_index, retriever="bm25", post_hoc=False, abstain=False,
                          allowed_hosts=("rag.internal",)), generator=gen) as url:  # fmt: skip
        assert ask(url, QUESTION, Host="rag.internal:443").status_code == 200
        assert ask(url, QUESTION, Host="localhost").status_code == 200
        assert ask(url, QUESTION, Host="evil.example").status_code == 400
    with serving(settings(sample_index, retriever="bm25", post_hoc=False, abstain=False, allowed_hosts=("*",)),
                 generator=gen) as url:  # fmt: skip
        assert ask(url, QUESTION, Host="evil.example").status_code == 200
    # With an API key a rebinding page has nothing to send: any host, the key decides.
    with serving(settings(sample_index, retriever="bm25", post_hoc=False, abstain=False, api_key="k"),
                 generator=gen) as url:  # fmt: skip
        assert ask(url, QUESTION, Host="evil.example").status_code == 401
        assert ask(url, QUESTION, Host="evil.example", Authorization="Bearer k").status_code == 200


def test_host_policy_of_other_binds() -> None:
    from app.serve.guards import host_policy

    assert host_policy(None, "key", "127.0.0.1") is None and host_policy(["*"], None, "0.0.0.0") is None
    lan = host_policy(None, None, "192.168.1.5")
    assert lan is not None
    assert lan.allows("192.168.1.5:8080") and lan.allows("localhost") and lan.allows("[fe80::1]:80")
    assert not lan.allows("evil.example") and not lan.allows("evil.example:8080")
    wild = host_policy(None, None, "0.0.0.0")
    assert wild is not None and wild.allows("10.0.0.7") and not wild.allows("evil.example")
    named = host_policy(["rag.example.org"], None, "0.0.0.0")
    assert named is not None and named.allows("RAG.example.org.:443") and not named.allows("10.0.0.7")
    loop = host_policy(None, None, "::1")
    assert loop is not None and loop.allows("[::1]:8080") and not loop.allows("10.0.0.7")


# -- the login cookie ----------------------------------------------------------------------------


def test_login_cookie_is_a_session_token_with_strict_flags(sample_index: Path) -> None:
    from app.serve.guards import session_token

    key = "s3cret-key"
    s = settings(sample_index, retriever="bm25", post_hoc=False, abstain=False, api_key=key)
    with serving(s, generator=FakeGenerator(["It opened in 1937 [1]."])) as url:
        assert httpx.post(f"{url}/login", data={"key": "wrong"}).status_code == 401
        r = httpx.post(f"{url}/login", data={"key": key})
        assert r.status_code == 303
        cookie = r.headers["set-cookie"]
        name, value = cookie.split(";")[0].split("=", 1)
        flags = {f.strip().lower() for f in cookie.split(";")[1:]}
        assert name == "citerag_session" and key not in cookie and value == session_token(key)
        assert {"httponly", "samesite=strict"} <= flags and "secure" not in flags
        assert httpx.get(f"{url}/v1/info", headers={"Cookie": f"citerag_session={value}"}).status_code == 200
        flipped = value[:-1] + ("0" if value[-1] != "0" else "1")
        for forged in (key, flipped, "0" * 64, session_token("another key"), ""):
            r = httpx.get(f"{url}/v1/info", headers={"Cookie": f"citerag_session={forged}"})
            assert r.status_code == 401, forged
        assert httpx.get(f"{url}/v1/info", headers={"Cookie": f"citerag_api_key={key}"}).status_code == 401
        # Over https (here: a proxy on loopback, which uvicorn trusts for X-Forwarded-Proto): Secure.
        r = httpx.post(f"{url}/login", data={"key": key}, headers={"X-Forwarded-Proto": "https"})
        assert r.status_code == 303 and "secure" in {f.strip().lower() for f in r.headers["set-cookie"].split(";")}


# -- real processes: the slow fake generator, `citerag serve` ----------------------------------------


def fake_llm(port: int, *args: str) -> subprocess.Popen[bytes]:
    """Start tests/fake_llm_server.py on ``port`` and wait until it answers."""
    return start_process(port, *args)


def llm_stats(port: int) -> dict[str, int]:
    return dict(httpx.get(f"http://127.0.0.1:{port}/stats", timeout=5).json())


def llm_started(port: int) -> int:
    return llm_stats(port)["completions_started"]


@contextlib.contextmanager
def citerag_serve(index: Path, llm_port: int, log: Path, *args: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A real ``citerag serve`` process over the fake generator, ready; killed if still running."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--index", str(index), "--port", str(port),
             "--llm-url", f"http://127.0.0.1:{llm_port}", "--retriever", "bm25", "--no-post-hoc", "--no-abstain",
             "--log-level", "warning", *args],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                assert proc.poll() is None, log.read_text()[-3000:]
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                        break
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.3)
            yield proc, url
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)


@contextlib.contextmanager
def request_in_flight(
    sample_index: Path, tmp_path: Path, llm_delay: str, grace: str
) -> Iterator[tuple[subprocess.Popen[bytes], str, Future[httpx.Response], int]]:
    """A `citerag serve` process (``--grace-seconds grace``) over the fake generator taking
    ``llm_delay`` seconds, with one request that has reached the generator: (process, url,
    the request's future, the generator's port)."""
    llm_port = free_port()
    llm = fake_llm(llm_port, "--delay", llm_delay)
    try:
        with citerag_serve(sample_index, llm_port, tmp_path / "serve.log", "--grace-seconds", grace) as (proc, url):
            with ThreadPoolExecutor(1) as pool:
                inflight = pool.submit(ask, url, QUESTION)
                wait_for(lambda: llm_started(llm_port) == 1, what="the request to reach the generator")
                yield proc, url, inflight, llm_port
    finally:
        llm.kill()
        llm.wait(10)


def test_sigterm_finishes_requests_in_flight_refuses_new_ones_and_exits_0(sample_index: Path, tmp_path: Path) -> None:
    with request_in_flight(sample_index, tmp_path, "3", "20") as (proc, url, inflight, llm_port):
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        with pytest.raises(httpx.ConnectError):
            ask(url, SECOND, timeout=5)
        r = inflight.result()
        assert r.status_code == 200, r.text
        assert r.json()["question"] == QUESTION and r.json()["answer"]
        assert proc.wait(30) == 0, (tmp_path / "serve.log").read_text()[-3000:]
        assert llm_started(llm_port) == 1, "the refused request reached the generator"


def test_sigterm_past_the_grace_period_answers_503_and_exits_0(sample_index: Path, tmp_path: Path) -> None:
    with request_in_flight(sample_index, tmp_path, "30", "1") as (proc, url, inflight, _):
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        r = inflight.result()
        waited = time.monotonic() - t0
        assert r.status_code == 503 and r.headers["retry-after"], r.text
        assert r.json()["error"]["type"] == "ServerDrainingError" and "--grace-seconds" in r.text
        assert 0.8 < waited < 10, waited
        assert proc.wait(20) == 0, (tmp_path / "serve.log").read_text()[-3000:]


def read_sse(response: httpx.Response, on_event: Callable[[int], None] | None = None) -> list[tuple[str, Any]]:
    events: list[tuple[str, Any]] = []
    name = ""
    for line in response.iter_lines():
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            events.append((name, json.loads(line[5:])))
            if on_event is not None:
                on_event(len(events))
    return events


def test_generator_killed_mid_stream_gives_an_error_event_then_recovers(sample_index: Path) -> None:
    llm_port = free_port()
    llm = fake_llm(llm_port, "--piece-delay", "0.5")
    llm_url = f"http://127.0.0.1:{llm_port}"
    s = settings(sample_index, llm_url=llm_url, retriever="bm25", post_hoc=False, abstain=False)
    try:
        with serving(s) as url:
            body = {"question": QUESTION, "stream": True}

            def kill_after_first(n: int) -> None:
                if n == 1:
                    llm.kill()
                    llm.wait(10)

            t0 = time.monotonic()
            with httpx.stream("POST", f"{url}/v1/ask", json=body, timeout=60) as r:
                assert r.status_code == 200
                events = read_sse(r, kill_after_first)
            names = [n for n, _ in events]
            assert names[0] == "token" and names[-1] == "error" and "final" not in names, names
            err = events[-1][1]
            assert err["status"] == 503 and err["type"] == "GeneratorUnavailableError", err
            assert llm_url in err["message"]
            assert time.monotonic() - t0 < 30
            # Back on the same port: the next streamed answer is whole.
            llm = fake_llm(llm_port, "--piece-delay", "0.01")
            with httpx.stream("POST", f"{url}/v1/ask", json=body, timeout=60) as r:
                assert r.status_code == 200
                events = read_sse(r)
            names = [n for n, _ in events]
            assert names[-1] == "final" and {"token"} <= set(names[:-1]) <= {"token", "sentence"}, names
            assert "1937" in events[-1][1]["answer"]
    finally:
        llm.kill()
        llm.wait(10)


def test_stream_left_by_its_client_stops_generating_and_keeps_its_thread_till_then(sample_index: Path) -> None:
    """``--threads 1``: an SSE client leaves after the first token; the generation stream to the
    LLM server is closed at its next piece (not run to the end), and the next request is
    answered once that has happened."""
    llm_port = free_port()
    llm = fake_llm(llm_port, "--piece-delay", "0.3")
    s = settings(sample_index, llm_url=f"http://127.0.0.1:{llm_port}", retriever="bm25", post_hoc=False,
                 abstain=False, threads=1)  # fmt: skip
    try:
        with serving(s) as url:
            body = {"question": QUESTION, "stream": True, "quotes": False}
            with httpx.stream("POST", f"{url}/v1/ask", json=body, timeout=60) as r:
                assert r.status_code == 200
                for line in r.iter_lines():
                    if line.startswith("event: token"):
                        break  # leave after the first token
            r = httpx.post(f"{url}/v1/ask", json={"question": SECOND, "quotes": False}, timeout=60)
            assert r.status_code == 200, r.text
            stats = llm_stats(llm_port)
            assert stats["completions_started"] == 2
            wait_for(lambda: llm_stats(llm_port)["streams_aborted"] == 1, timeout=10, what="the stream to be aborted")
            assert llm_stats(llm_port)["streams_finished"] == 0
    finally:
        llm.kill()
        llm.wait(10)
