"""Overhead of the OpenAI-compatible chat endpoint over ``/v1/ask`` (issue 14).

One server (``serve.py``, SmolLM2 in vLLM's async engine in the server process, the NQ-open
gold-passage index of bench_ask.py) answers the same ``--questions`` NQ-open questions through
``POST /v1/ask`` (A) and ``POST /v1/chat/completions`` (B, one user message), one request at a
time, interleaved A B B A per pair of questions so that the machine's other load hits both
alike. Same greedy settings (the server's temperature 0 and ``--max-tokens``), and prefix
caching off so a question's second request does not skip its prefill. Both go through plain
httpx (what is measured is the server, not a client library). Prints the median latency of
each, the ratio of medians and the median of the per-question ratios (target: within 5%), and
how many chat answers are the ask answer in chat form (``content_of``).

    OMP_NUM_THREADS=2 nice -n 5 .venv/bin/python bench/bench_chat_overhead.py [--questions 32] \\
        [--index /work/main/bench/out/nq_index]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_ask import DEFAULT_DATA, load, nq_index  # noqa: E402
from bench_serve import start_server, stop_server, wait_ready  # noqa: E402


async def timed(client: Any, url: str, body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    t = time.perf_counter()
    r = await client.post(url, json=body)
    elapsed = time.perf_counter() - t
    if r.status_code != 200:
        raise SystemExit(f"{url}: HTTP {r.status_code}: {r.text[:300]}")
    return elapsed, r.json()


async def run(args: argparse.Namespace) -> None:
    import httpx

    from app.serve.openai_chat import content_of

    corpus, rows, _ = load(args.data, args.questions + 2)
    index_dir = args.index or nq_index(args.out, corpus)
    qs = [r["question"] for r in rows]
    args.llm_url, args.dtype = None, None  # bench_serve.start_server: the embedded engine, no prefix caching
    args.out.mkdir(parents=True, exist_ok=True)
    log_path = args.out / "bench_chat_overhead.server.log"
    proc, url = start_server(args, index_dir, log_path)
    try:
        ready = await wait_ready(url, proc, log_path)
        print(
            f"server ready in {ready:.1f} s; index {index_dir}; max_tokens {args.max_tokens}; n {args.questions}",
            flush=True,
        )
        lat: dict[str, list[float]] = {"ask": [], "chat": []}
        same = 0
        async with httpx.AsyncClient(timeout=httpx.Timeout(900.0)) as c:

            async def ask(q: str) -> tuple[float, dict[str, Any]]:
                return await timed(c, f"{url}/v1/ask", {"question": q})

            async def chat(q: str) -> tuple[float, dict[str, Any]]:
                body = {"model": "citerag", "messages": [{"role": "user", "content": q}]}
                return await timed(c, f"{url}/v1/chat/completions", body)

            for q in qs[-2:]:  # warm-up, not reported
                await ask(q)
                await chat(q)
            for i, q in enumerate(qs[: args.questions]):
                order = ("ask", "chat") if i % 2 == 0 else ("chat", "ask")  # A B, B A, A B, ...
                out: dict[str, dict[str, Any]] = {}
                for name in order:
                    t, out[name] = await (ask(q) if name == "ask" else chat(q))
                    lat[name].append(t)
                same += out["chat"]["choices"][0]["message"]["content"] == content_of(out["ask"])
                if (i + 1) % 8 == 0:
                    done = f"{i + 1}/{args.questions} questions"
                    print(f"  {done}: ask {lat['ask'][-1]:.2f} s, chat {lat['chat'][-1]:.2f} s (last)", flush=True)
        print(f"{'endpoint':>22} {'n':>4} {'median_s':>9} {'mean_s':>8} {'p90_s':>7}")
        for name, path in (("ask", "/v1/ask"), ("chat", "/v1/chat/completions")):
            xs = sorted(lat[name])
            p90 = xs[min(len(xs) - 1, int(0.9 * len(xs)))]
            print(f"{path:>22} {len(xs):>4} {statistics.median(xs):>9.3f} {statistics.fmean(xs):>8.3f} {p90:>7.3f}")
        ratio = statistics.median(lat["chat"]) / statistics.median(lat["ask"])
        paired = statistics.median(b / a for a, b in zip(lat["ask"], lat["chat"]))
        print(f"same answer in both: {same}/{args.questions}")
        print(f"ratio chat/ask: median latency {ratio:.3f}x, median per-question ratio {paired:.3f}x (target <= 1.05x)")
    finally:
        stop_server(proc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    ap.add_argument("--index", type=Path, default=None, help="an index of the NQ corpus (default: built in --out)")
    ap.add_argument("--questions", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=64)
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
