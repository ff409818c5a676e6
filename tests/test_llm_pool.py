"""Several generator servers (issue 15, part 3): ``OpenAIPool`` against real HTTP servers.

The servers are tests/fake_llm_server.py (OpenAI-compatible, no model): in threads where a test
only needs them answering or slow, as processes where one must be killed mid-run (a real kill:
its open connections die with it). ``--echo`` makes each answer depend on its prompt, so a
wrong order or a lost prompt shows.
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
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fake_llm_server import ANSWER, FakeServer, start_process

from pipeline.errors import ConfigError, GeneratorUnavailableError, ModelNotFoundError
from pipeline.generators import make_generator
from pipeline.generators.openai_http import OpenAIGenerator
from pipeline.generators.openai_pool import OpenAIPool, split_urls
from pipeline.generators.server import free_port
from pipeline.types import GenerationParams

ROOT = Path(__file__).resolve().parents[1]
PARAMS = GenerationParams(max_tokens=16)


@contextlib.contextmanager
def servers(*delays: float, models: tuple[str, ...] = ()) -> Iterator[list[FakeServer]]:
    """Echoing fake servers in threads, one per delay (seconds per completion)."""
    started = []
    for i, d in enumerate(delays):
        srv = FakeServer(free_port(), delay=d, piece_delay=0.0, echo=True, model=models[i] if models else "fake")
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        started.append(srv)
    try:
        yield started
    finally:
        for srv in started:
            srv.shutdown()
            srv.server_close()


def url(srv: FakeServer) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}"


def spawn(port: int, *args: str) -> subprocess.Popen[bytes]:
    """tests/fake_llm_server.py as a process on ``port``, echoing, once it answers."""
    return start_process(port, "--echo", *args)


def started(port: int) -> int:
    return int(httpx.get(f"http://127.0.0.1:{port}/stats", timeout=5).json()["completions_started"])


def prompts(n: int) -> list[str]:
    return [f"question number {i}" for i in range(n)]


def test_urls_repeated_or_comma_separated_and_one_url_stays_a_plain_client() -> None:
    assert split_urls(["a:1,b:2", " http://c:3/v1 "]) == ["http://a:1", "http://b:2", "http://c:3"]
    with pytest.raises(ConfigError, match="more than once"):
        split_urls("a:1,http://a:1/")
    with pytest.raises(ConfigError, match="empty"):
        split_urls(" , ")
    one = make_generator("openai", "m", llm_url="http://127.0.0.1:9/v1")
    assert type(one) is OpenAIGenerator and one.base_url == "http://127.0.0.1:9"
    assert type(make_generator("openai", "m", llm_url="127.0.0.1:9,")) is OpenAIGenerator
    pool = make_generator("openai", "m", llm_url="127.0.0.1:9,127.0.0.1:10")
    assert isinstance(pool, OpenAIPool) and pool.urls == ["http://127.0.0.1:9", "http://127.0.0.1:10"]


def test_cli_option_takes_repeats_and_commas() -> None:
    import click
    from click.testing import CliRunner

    from app.cli_common import llm_options

    seen: dict[str, object] = {}

    @click.command()
    @llm_options()
    def cmd(**kw: object) -> None:
        seen.update(kw)

    def llm_url(args: list[str], env: str) -> object:
        r = CliRunner().invoke(cmd, args, env={"CITERAG_LLM_URL": env})
        assert r.exit_code == 0, r.output
        return seen["llm_url"]

    assert llm_url(["--llm-url", "a:1", "--llm-url", "b:2,c:3"], "") == "a:1,b:2,c:3"
    assert llm_url([], "a:1,b:2") == "a:1,b:2"
    assert llm_url(["--llm-url", "http://h:1/v1"], "") == "http://h:1/v1"  # one URL passes through unchanged
    assert llm_url([], "") is None


def test_equal_servers_take_turns_and_results_keep_input_order() -> None:
    with servers(0.0, 0.0, 0.0) as srvs:
        pool = OpenAIPool([url(s) for s in srvs], timeout=30)
        for p in prompts(6):  # one at a time: every server idle, so round robin decides
            assert pool.generate([p], PARAMS)[0].text == "echo: " + p
        assert [s.started for s in srvs] == [2, 2, 2]
        out = pool.generate(prompts(30), PARAMS)
        assert [g.text for g in out] == ["echo: " + p for p in prompts(30)]
        assert sum(s.started for s in srvs) == 36
        pool.close()


def test_a_slow_server_gets_fewer_requests() -> None:
    """Least outstanding requests: the slow server's requests stay outstanding, so the fast
    one is chosen for most of the batch."""
    with servers(0.4, 0.02) as (slow, fast):
        pool = OpenAIPool([url(slow), url(fast)], per_server=2, timeout=30)
        t0 = time.monotonic()
        out = pool.generate(prompts(40), PARAMS)
        took = time.monotonic() - t0
        assert [g.text for g in out] == ["echo: " + p for p in prompts(40)]
        assert slow.started + fast.started == 40
        assert slow.started * 3 < fast.started, (slow.started, fast.started)
        # an even split would need 20 * 0.4 s / 2 in flight = 4 s on the slow server alone
        assert took < 3.5, took
        pool.close()


def test_a_killed_server_is_taken_out_and_comes_back_after_restart() -> None:
    ports = [free_port() for _ in range(3)]
    procs = [spawn(p, "--delay", "0.1") for p in ports]
    try:
        pool = OpenAIPool([f"127.0.0.1:{p}" for p in ports], per_server=2, backoff=1.0, timeout=30)
        batch = prompts(60)
        result: list[object] = []
        worker = threading.Thread(target=lambda: result.append(pool.generate(batch, PARAMS)))
        worker.start()
        deadline = time.monotonic() + 30
        while started(ports[1]) < 2:  # the victim has requests in flight
            assert time.monotonic() < deadline
            time.sleep(0.02)
        procs[1].send_signal(signal.SIGKILL)
        procs[1].wait(10)
        worker.join(60)
        assert not worker.is_alive()
        out = result[0]
        assert isinstance(out, list) and [g.text for g in out] == ["echo: " + p for p in batch]
        victim = pool.servers[1]
        assert victim.backoff in (1.0, 2.0) and victim.url == f"http://127.0.0.1:{ports[1]}"
        assert started(ports[0]) + started(ports[2]) >= 60 - 2  # the rest, and the victim's retries
        procs[1] = spawn(ports[1], "--delay", "0.1")
        # while it is out of rotation (held there for this check), nothing is sent to it
        victim.down_until = time.monotonic() + 60
        assert [g.text for g in pool.generate(prompts(6), PARAMS)] == ["echo: " + p for p in prompts(6)]
        assert started(ports[1]) == 0
        victim.down_until = time.monotonic()  # the back-off has passed: it is tried again and answers
        assert [g.text for g in pool.generate(prompts(12), PARAMS)] == ["echo: " + p for p in prompts(12)]
        assert started(ports[1]) >= 2
        assert victim.backoff == 0 and victim.down_until == 0
        pool.close()
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(10)


def test_all_servers_down_names_every_url_and_backs_off_longer_each_time() -> None:
    ports = [free_port(), free_port()]
    pool = OpenAIPool([f"127.0.0.1:{p}" for p in ports], backoff=5.0, max_backoff=60.0, timeout=5)
    for want in (5.0, 10.0, 20.0, 40.0, 60.0, 60.0):
        with pytest.raises(GeneratorUnavailableError) as err:
            pool.generate(["hi"], PARAMS)
        assert all(f"http://127.0.0.1:{p}" in str(err.value) for p in ports)
        assert "none of the 2 LLM servers answered" in str(err.value)
        assert [s.backoff for s in pool.servers] == [want, want]


def test_servers_that_serve_different_models_are_refused() -> None:
    with servers(0.0, 0.0, models=("model-a", "model-b")) as (a, b):
        pool = OpenAIPool([url(a), url(b)], timeout=30)
        with pytest.raises(ConfigError, match="serve different models") as err:
            pool.generate(["hi"], PARAMS)
        assert "'model-a'" in str(err.value) and "'model-b'" in str(err.value)
        assert a.started == b.started == 0
        with pytest.raises(ModelNotFoundError, match="does not serve 'model-a'"):
            OpenAIPool([url(a), url(b)], "model-a", timeout=30).generate(["hi"], PARAMS)


def test_a_down_server_at_start_is_skipped_and_streams_fail_over() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with servers(0.0) as (live,):
        pool = OpenAIPool([dead, url(live)], timeout=30)
        assert pool.model == "fake" and pool.max_context == 100000
        assert pool.servers[0].backoff > 0  # found down while connecting
        live.echo = False
        pool.servers[0].down_until = 0.0  # due again: the stream tries it first (round robin), then the live one
        pieces = list(pool.stream("hi", PARAMS))
        assert "".join(p.text for p in pieces) == ANSWER and pieces[-1].finish_reason == "stop"
        assert pool.servers[0].backoff == 10.0  # it was tried, failed again, and backs off longer
        assert pool.health()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    env.pop("CITERAG_LLM_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "-q", *args], capture_output=True, text=True, timeout=600, env=env
    )


def answers(path: Path) -> list[dict[str, object]]:
    """The answer rows without their timings (the one thing that differs run to run)."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for r in rows:
        r.pop("timings")
    return rows


def test_cli_ask_with_two_servers_answers_as_with_one(sample_index: Path, tmp_path: Path) -> None:
    qf = tmp_path / "q.jsonl"
    qs = ["When did the Golden Gate Bridge open?", "Who discovered polonium?", "How tall is Mount Everest?"]
    qf.write_text("".join(json.dumps({"id": f"q{i}", "question": q}) + "\n" for i, q in enumerate(qs)))
    base = ["ask", "--questions", str(qf), "--index", str(sample_index), "--retriever", "bm25", "--no-abstain"]
    with servers(0.0, 0.0) as (a, b):
        for s in (a, b):
            s.echo = False
        one = run_cli(*base, "--out", str(tmp_path / "one.jsonl"), "--llm-url", url(a))
        assert one.returncode == 0, one.stderr
        a.started = 0
        two = run_cli(*base, "--out", str(tmp_path / "two.jsonl"), "--llm-url", url(a), "--llm-url", url(b))
        assert two.returncode == 0, two.stderr
        assert a.started > 0 and b.started > 0  # the batch was spread
        comma = run_cli(*base, "--out", str(tmp_path / "comma.jsonl"), "--llm-url", f"{url(a)},{url(b)}")
        assert comma.returncode == 0, comma.stderr
    rows = {name: answers(tmp_path / f"{name}.jsonl") for name in ("one", "two", "comma")}
    assert len(rows["one"]) == 3 and rows["one"] == rows["two"] == rows["comma"]
    assert [r["id"] for r in rows["one"]] == ["q0", "q1", "q2"] and all(r["answer"] for r in rows["one"])
    one_q = ["ask", qs[0], "--index", str(sample_index), "--retriever", "bm25", "--no-abstain"]
    down = run_cli(*one_q, "--llm-url", f"{url(a)},{url(b)}")
    assert down.returncode == 5, down.stderr
    assert url(a) in down.stderr and url(b) in down.stderr


def test_serve_with_two_urls_answers_and_shows_which_servers_are_in_rotation(sample_index: Path) -> None:
    pytest.importorskip("fastapi")
    from test_serve import serving, settings

    dead = f"http://127.0.0.1:{free_port()}"
    with servers(0.0) as (live,):
        live.echo = False
        s = settings(sample_index, retriever="bm25", llm_url=f"{dead},{url(live)}", abstain=False)
        with serving(s) as api:
            r = httpx.post(f"{api}/v1/ask", json={"question": "When did the Golden Gate Bridge open?"}, timeout=60)
            assert r.status_code == 200, r.text
            assert r.json()["answer"] == ANSWER
            ready = httpx.get(f"{api}/readyz", timeout=30).json()
    assert ready["ready"] is True and ready["generator"]["url"] == f"{dead},{url(live)}"
    dead_state, live_state = ready["generator"]["servers"]
    assert (dead_state["url"], dead_state["in_rotation"]) == (dead, False) and dead_state["retry_in_s"] > 0
    assert (live_state["url"], live_state["in_rotation"], live_state["outstanding"]) == (url(live), True, 0)


def test_a_server_that_comes_back_with_another_model_stays_out() -> None:
    port = free_port()
    with servers(0.0) as (live,):
        pool = OpenAIPool([url(live), f"127.0.0.1:{port}"], timeout=30)
        pool.connect()  # the second server is down: the pool's model is the first one's
        other = FakeServer(port, delay=0.0, piece_delay=0.0, echo=True, model="other")
        threading.Thread(target=other.serve_forever, daemon=True).start()
        try:
            pool.servers[1].down_until = 0.0  # its back-off has passed
            out = pool.generate(prompts(8), PARAMS)
            assert [g.text for g in out] == ["echo: " + p for p in prompts(8)]
            assert other.started == 0 and live.started == 8
            assert "does not serve 'fake'; it serves: other" in pool.servers[1].last_error
            # the requests that were sent to it together count as one failure: one back-off
            assert pool.servers[1].backoff == 10.0 and pool.servers[1].down_until > time.monotonic()
        finally:
            other.shutdown()
            other.server_close()
