"""Load with faults: 64 clients against `citerag serve`, 10% of requests malformed or oversized,
and the generator server restarted once in the middle of the run (issue 12).

The server is real (``serve.py`` on loopback, the NQ-open index of bench_ask.py, MiniLM
retrieval, the default judge for grounding). It generates through ``--llm-url``:

* ``--llm fake`` (default): ``tests/fake_llm_server.py``, an OpenAI-compatible stdlib server
  answering after ``--llm-delay`` seconds (streams word by word). What is measured is how the
  citerag server holds up, not the words of the answers, and a fake restarts in a second, so
  the outage is exactly ``--down-seconds`` long;
* ``--llm vllm``: ``citerag llm serve`` with SmolLM2 (a restart costs the engine's start-up,
  about a minute on this CPU).

Every client sends ``--per-client`` requests. One in ten is invalid, cycling through: a body
that is not JSON, an empty question, a question over --max-question-chars, an unknown field,
``k`` = 0, and a body over --max-body-bytes. One valid request in four streams (SSE). After
``--restart-after`` seconds the generator is killed, kept down ``--down-seconds``, and started
again on the same port. With ``--retry-503 N`` a client retries a valid request answered 503
(after ``--retry-wait`` s, as Retry-After asks) up to N times, so the run also shows recovery;
latencies then include the retries.

The rule checked: every valid request gets an answer (200, or a stream ending in ``final``) or
a 503 (JSON, or a stream ending in an ``error`` event with status 503); every invalid one gets
a 4xx; nothing is lost (no connection error, no client timeout after ``--client-timeout``, no
stream that ends without a final or error event). Prints the counts and latencies; exits 1
when any request breaks the rule.

    .venv/bin/python bench/bench_serve_faults.py [--clients 64] [--per-client 4] [--llm fake|vllm]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_serve import DEFAULT_DATA, ensure_index, questions, stop_server, wait_ready  # noqa: E402

INVALID_KINDS = ("not-json", "empty-question", "long-question", "unknown-field", "k-zero", "huge-body")


def start_llm(args: argparse.Namespace, port: int, log: Path) -> subprocess.Popen[bytes]:
    if args.llm == "fake":
        cmd = [sys.executable, str(ROOT / "tests" / "fake_llm_server.py"), str(port),
               "--delay", str(args.llm_delay), "--piece-delay", "0.02"]  # fmt: skip
    else:
        cmd = [sys.executable, "-m", "app.cli", "llm", "serve", "--port", str(port), "--max-model-len", "2048"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env, start_new_session=True)


async def wait_llm(port: int, timeout: float = 600) -> None:
    import httpx

    t0 = time.perf_counter()
    async with httpx.AsyncClient() as c:
        while time.perf_counter() - t0 < timeout:
            try:
                if (await c.get(f"http://127.0.0.1:{port}/v1/models", timeout=5)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.3)
    raise SystemExit("the generator server did not start")


def request_for(i: int, q: str, args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """(kind, httpx request kwargs) of request ``i``: one in ten invalid, one valid in four streamed."""
    if i % 10 == 9:
        kind = INVALID_KINDS[(i // 10) % len(INVALID_KINDS)]
        body: Any = {
            "not-json": None,
            "empty-question": {"question": "   "},
            "long-question": {"question": "why " * (args.max_question_chars // 4 + 10)},
            "unknown-field": {"question": q, "temprature": 0.5},
            "k-zero": {"question": q, "k": 0},
            "huge-body": {"question": q, "padding": "x" * (args.max_body_bytes + 1000)},
        }[kind]
        if body is None:
            return kind, {"content": b'{"question": "unterminated', "headers": {"Content-Type": "application/json"}}
        return kind, {"json": body}
    stream = i % 4 == 0
    return ("valid-stream" if stream else "valid"), {"json": {"question": q, "stream": stream}}


async def one(c: Any, url: str, kind: str, kw: dict[str, Any]) -> tuple[str, float]:
    """The outcome of one request: ``answered``, ``503``, ``4xx:<code>``, ``504``, ``500`` or ``lost:<why>``."""
    import httpx

    t0 = time.perf_counter()
    try:
        if kind == "valid-stream":
            last_event, last_data = "", ""
            async with c.stream("POST", f"{url}/v1/ask", **kw) as r:
                if r.status_code != 200:
                    await r.aread()
                    return _status(r.status_code), time.perf_counter() - t0
                async for line in r.aiter_lines():
                    if line.startswith("event:"):
                        last_event = line[6:].strip()
                    elif line.startswith("data:"):
                        last_data = line[5:].strip()
            if last_event == "final":
                return "answered", time.perf_counter() - t0
            if last_event == "error":
                status = json.loads(last_data).get("status")  # {"type", "message", "status"}
                return _status(int(status or 0)), time.perf_counter() - t0
            return "lost:stream ended without final or error", time.perf_counter() - t0
        r = await c.post(f"{url}/v1/ask", **kw)
        return (_status(r.status_code) if r.status_code != 200 else "answered"), time.perf_counter() - t0
    except httpx.TimeoutException:
        return "lost:client timeout", time.perf_counter() - t0
    except httpx.HTTPError as exc:
        return f"lost:{exc.__class__.__name__}", time.perf_counter() - t0


def _status(code: int) -> str:
    return f"4xx:{code}" if 400 <= code < 500 else str(code)


async def run(args: argparse.Namespace) -> int:
    import httpx
    import numpy as np

    from pipeline.generators.server import free_port

    args.out.mkdir(parents=True, exist_ok=True)
    index_dir = ensure_index(args.out, args.data)
    llm_port, llm_log = free_port(), args.out / "bench_serve_faults.llm.log"
    llm = start_llm(args, llm_port, llm_log)
    await wait_llm(llm_port)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = args.out / "bench_serve_faults.server.log"
    cmd = [sys.executable, str(ROOT / "serve.py"), "--index", str(index_dir), "--port", str(port),
           "--llm-url", f"http://127.0.0.1:{llm_port}", "--max-tokens", "48", "--log-level", "warning",
           "--request-timeout", str(args.request_timeout), "--max-question-chars", str(args.max_question_chars),
           "--max-body-bytes", str(args.max_body_bytes)]  # fmt: skip
    server = subprocess.Popen(cmd, stdout=log_path.open("wb"), stderr=subprocess.STDOUT,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})  # fmt: skip
    try:
        ready = await wait_ready(url, server, log_path)
        n = args.clients * args.per_client
        qs = questions(args.data, n, skip=1000)
        plan = [request_for(i, q, args) for i, q in enumerate(qs)]
        print(
            f"server ready in {ready:.1f} s; generator {args.llm} at :{llm_port}; {args.clients} clients x "
            f"{args.per_client} = {n} requests ({sum(k not in ('valid', 'valid-stream') for k, _ in plan)} invalid); "
            f"generator killed at {args.restart_after:.0f} s, down {args.down_seconds:.0f} s"
        )
        todo = list(reversed(list(enumerate(plan))))
        results: list[tuple[str, str, float]] = []
        restart: dict[str, float] = {}
        limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
        t_start = time.perf_counter()

        retried = Counter()

        async def client(c: Any) -> None:
            while todo:
                _, (kind, kw) = todo.pop()
                t0 = time.perf_counter()
                outcome, dt = await one(c, url, kind, kw)
                for _ in range(args.retry_503):  # a client that honours Retry-After
                    if outcome != "503":
                        break
                    retried["retries"] += 1
                    await asyncio.sleep(args.retry_wait)
                    outcome, dt = await one(c, url, kind, kw)
                if outcome == "answered" and time.perf_counter() - t_start > restart.get("back_at", float("inf")):
                    retried["answered after the restart"] += 1
                results.append((kind, outcome, time.perf_counter() - t0 if args.retry_503 else dt))

        async def restarter() -> None:
            nonlocal llm
            await asyncio.sleep(args.restart_after)
            restart["killed_at"] = time.perf_counter() - t_start
            os.killpg(llm.pid, signal.SIGKILL)
            llm.wait()
            await asyncio.sleep(args.down_seconds)
            llm = start_llm(args, llm_port, llm_log)
            await wait_llm(llm_port)
            restart["back_at"] = time.perf_counter() - t_start

        async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(args.client_timeout)) as c:
            await asyncio.gather(restarter(), *(client(c) for _ in range(args.clients)))
        wall = time.perf_counter() - t_start
    finally:
        stop_server(server)
        try:
            os.killpg(llm.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    valid = [(o, dt) for k, o, dt in results if k.startswith("valid")]
    invalid = [(k, o) for k, o, _ in results if not k.startswith("valid")]
    answered = [dt for o, dt in valid if o == "answered"]
    counts = Counter(o for o, _ in valid)
    bad_valid = [o for o, _ in valid if o not in ("answered", "503")]
    bad_invalid = [(k, o) for k, o in invalid if not o.startswith("4xx")]
    lat = np.array(answered) if answered else np.array([float("nan")])
    print(f"wall {wall:.1f} s; generator killed at {restart.get('killed_at', float('nan')):.1f} s, "
          f"back at {restart.get('back_at', float('nan')):.1f} s")  # fmt: skip
    print(f"{'requests':>9} {'valid':>6} {'answered':>9} {'503':>5} {'invalid':>8} {'4xx':>5} {'lost':>5} "
          f"{'p50_s':>7} {'p99_s':>7}")  # fmt: skip
    lost = sum(o.startswith("lost") for _, o, _ in results)
    print(f"{len(results):>9} {len(valid):>6} {counts['answered']:>9} {counts['503']:>5} {len(invalid):>8} "
          f"{sum(o.startswith('4xx') for _, o in invalid):>5} {lost:>5} "
          f"{np.percentile(lat, 50):>7.2f} {np.percentile(lat, 99):>7.2f}")  # fmt: skip
    print("valid outcomes:", dict(counts), dict(retried) if args.retry_503 else "")
    print("invalid outcomes:", dict(Counter(f"{k} -> {o}" for k, o in invalid)))
    ok = not bad_valid and not bad_invalid and len(results) == len(plan)
    if not ok:
        print("RULE BROKEN:", Counter(bad_valid), Counter(bad_invalid), f"{len(plan) - len(results)} never finished")
    return 0 if ok else 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--per-client", type=int, default=4)
    ap.add_argument("--llm", choices=("fake", "vllm"), default="fake")
    ap.add_argument("--llm-delay", type=float, default=0.5, help="seconds the fake generator takes per answer")
    ap.add_argument("--restart-after", type=float, default=20.0, help="kill the generator this many seconds in")
    ap.add_argument("--down-seconds", type=float, default=8.0, help="keep it down this long, then restart it")
    ap.add_argument("--request-timeout", type=float, default=300.0)
    ap.add_argument("--client-timeout", type=float, default=600.0, help="a request taking longer is 'lost (hung)'")
    ap.add_argument("--retry-503", type=int, default=0, help="retry a valid request answered 503 up to N times")
    ap.add_argument("--retry-wait", type=float, default=3.0, help="seconds before each retry (as Retry-After)")
    ap.add_argument("--max-question-chars", type=int, default=2000)
    ap.add_argument("--max-body-bytes", type=int, default=1 << 20)
    args = ap.parse_args()
    raise SystemExit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
