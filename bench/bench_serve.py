"""Load test of the HTTP API on loopback: NQ-open questions against `python serve.py` with SmolLM2.

Starts the server as users do (``serve.py``: vLLM's async engine in the server process by
default, or ``--llm-url`` to an OpenAI-compatible server), then, after a warm-up:

1. the *ratio* run: the same ``--ratio-requests`` questions sent one at a time (half before,
   half after) and by 32 concurrent clients (side by side in this run; target: at least 4x,
   zero errors). The embedded engine runs with ``--no-prefix-caching`` so the repeated
   prompts are not served from vLLM's prefix cache;
2. the load levels (``--levels``, default 8, 32, 64 clients): each sends
   ``--requests-per-client`` questions per client, bounded by ``--level-seconds``.

Prints throughput (requests/s), p50 / p99 latency and errors per level, and ends with one
line of the ratio. Bounded in requests and time; traffic only to 127.0.0.1. The index is the
NQ-open gold-passage corpus (``bench/out/nq_index``, built by bench_ask.py or here).

What bounds the ratio on a 2-core CPU (measured here): vLLM's CPU engine runs on one core;
a RAG prompt is 150 (k=1) to 600 (k=5) tokens and SmolLM2's NQ answers are 20-40 tokens, so
much of each request is prefill, which batching does not make cheaper, and a batch-32 decode
step is compute-bound. The engine alone (no HTTP) gave 1.9-2.5x at 32 concurrent requests.
Absolute times and ratios move a lot when other jobs share the machine: run it on a quiet one.

    .venv/bin/python bench/bench_serve.py [--levels 8,32,64] [--ratio-requests 32] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.bench_ask import SHARED_DATA  # noqa: E402

DEFAULT_DATA = SHARED_DATA / "nq_open_oracle" / "nq-open-oracle.jsonl.gz"


def questions(data: Path, n: int, skip: int = 0) -> list[str]:
    with gzip.open(data, "rt", encoding="utf-8") as fh:
        rows = [json.loads(line)["question"] for line in fh]
    rows = rows[skip:] + rows[:skip]
    return [rows[i % len(rows)] for i in range(n)]


def ensure_index(out: Path, data: Path) -> Path:
    from retrievers.index import index_exists

    index_dir = out / "nq_index"
    if index_exists(index_dir):
        return index_dir
    from bench_ask import load  # the same corpus as bench_ask.py: one gold passage per document

    from retrievers.index import build_index

    corpus, _, _ = load(data, 0)
    out.mkdir(parents=True, exist_ok=True)
    corpus_file = out / "nq_corpus.jsonl"
    corpus_file.write_text("".join(json.dumps(r) + "\n" for r in corpus))
    build_index(str(corpus_file), str(index_dir), mode="tokens", size=400, overlap=0, progress=False)
    return index_dir


def start_server(
    args: argparse.Namespace, index_dir: Path, log_path: Path, extra: tuple[str, ...] = ()
) -> tuple[subprocess.Popen[bytes], str]:
    from pipeline.generators.server import free_port

    port = free_port()
    cmd = [sys.executable, str(ROOT / "serve.py"), "--index", str(index_dir), "--port", str(port),
           "--max-tokens", str(args.max_tokens), "--log-level", "warning", "--request-timeout", "600"]  # fmt: skip
    if args.llm_url:
        cmd += ["--llm-url", args.llm_url]
    else:
        # The ratio run sends the same prompts twice: with prefix caching the second pass
        # would skip their prefill and look faster than it is.
        cmd += ["--no-prefix-caching"]
    if args.dtype:
        cmd += ["--dtype", args.dtype]
    cmd += list(extra)
    log = log_path.open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return proc, f"http://127.0.0.1:{port}"


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the server drains), SIGKILL if it is still there after a minute."""
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()


async def wait_ready(url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout: float = 600) -> float:
    import httpx

    t0 = time.perf_counter()
    async with httpx.AsyncClient() as c:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"the server exited:\n{log_path.read_text()[-3000:]}")
            try:
                if (await c.get(f"{url}/readyz", timeout=10)).status_code == 200:
                    return time.perf_counter() - t0
            except httpx.HTTPError:
                pass
            if time.perf_counter() - t0 > timeout:
                raise SystemExit("the server did not become ready")
            await asyncio.sleep(0.5)


async def load_level(url: str, qs: list[str], clients: int, seconds: float, k: int | None = None) -> dict[str, Any]:
    """``clients`` concurrent clients work through ``qs`` (stopping at the time bound)."""
    import httpx

    todo = list(reversed(qs))
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(900.0)) as c:

        async def client() -> None:
            while todo and time.perf_counter() < deadline:
                q = todo.pop()
                t = time.perf_counter()
                try:
                    r = await c.post(f"{url}/v1/ask", json={"question": q, "k": k})
                    if r.status_code != 200:
                        errors.append(f"HTTP {r.status_code}: {r.text[:200]}")
                        continue
                    if not r.json().get("passages"):
                        errors.append("an answer without passages")
                        continue
                except httpx.HTTPError as exc:
                    errors.append(f"{exc.__class__.__name__}: {exc}")
                    continue
                latencies.append(time.perf_counter() - t)

        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        wall = time.perf_counter() - t0
    out = summarise(clients, latencies, errors, wall, skipped=len(todo))
    out["_latencies"], out["_errors"] = latencies, errors
    return out


def summarise(clients: int, latencies: list[float], errors: list[str], wall: float, skipped: int = 0) -> dict[str, Any]:
    import numpy as np

    lat = np.array(latencies) if latencies else np.array([float("nan")])
    return {
        "clients": clients,
        "ok": len(latencies),
        "errors": len(errors),
        "not_sent": skipped,
        "wall_s": wall,
        "req_per_s": len(latencies) / wall if wall > 0 else 0.0,
        "p50_s": float(np.percentile(lat, 50)),
        "p99_s": float(np.percentile(lat, 99)),
        "first_error": errors[0] if errors else "",
    }


def row(name: str, r: dict[str, Any]) -> str:
    return (f"{name:>14} {r['ok']:>5} {r['errors']:>6} {r['not_sent']:>8} {r['wall_s']:>8.1f} "
            f"{r['req_per_s']:>7.2f} {r['p50_s']:>7.2f} {r['p99_s']:>7.2f}")  # fmt: skip


async def run(args: argparse.Namespace) -> int:
    index_dir = ensure_index(args.out, args.data)
    log_path = args.out / "bench_serve.server.log"
    proc, url = start_server(args, index_dir, log_path)
    try:
        ready_s = await wait_ready(url, proc, log_path)
        backend = "external --llm-url " + args.llm_url if args.llm_url else "embedded (vLLM async engine in the server)"
        print(
            f"server {url} ready in {ready_s:.1f} s; generator: {backend}; k {args.k or 'server default (5)'}; "
            f"max_tokens {args.max_tokens}; dtype {args.dtype or 'float32'}; index {index_dir}"
        )
        await load_level(url, questions(args.data, 4, skip=2000), 4, 300, args.k)  # warm-up (not reported)

        header = (
            f"{'run':>14} {'ok':>5} {'errors':>6} {'not_sent':>8} {'wall_s':>8} {'req/s':>7} {'p50_s':>7} {'p99_s':>7}"
        )
        print(header)
        # One at a time in two halves around the concurrent run (A-B-A), so a change in the
        # machine's other load during the run hits both sides alike.
        same = questions(args.data, args.ratio_requests)
        half = len(same) // 2
        first = await load_level(url, same[:half], 1, args.ratio_seconds / 2, args.k)
        par = await load_level(url, same, 32, args.ratio_seconds, args.k)
        second = await load_level(url, same[half:], 1, args.ratio_seconds / 2, args.k)
        seq = summarise(1, first["_latencies"] + second["_latencies"], first["_errors"] + second["_errors"],
                        first["wall_s"] + second["wall_s"], first["not_sent"] + second["not_sent"])  # fmt: skip
        print(row("1 (same reqs)", seq))
        print(row("32 (same reqs)", par))
        results = []
        for i, clients in enumerate(args.levels):
            qs = questions(args.data, clients * args.requests_per_client, skip=200 + 300 * i)
            r = await load_level(url, qs, clients, args.level_seconds, args.k)
            results.append(r)
            print(row(str(clients), r))
        errors = seq["errors"] + par["errors"] + sum(r["errors"] for r in results)
        for r in [seq, par, *results]:
            if r["first_error"]:
                print(f"first error at {r['clients']} clients: {r['first_error']}")
        ratio = par["req_per_s"] / seq["req_per_s"] if seq["req_per_s"] else float("nan")
        print(f"ratio: 32 concurrent clients / one at a time, same {args.ratio_requests} requests = {ratio:.2f}x "
              f"(target >= 4x); errors in all runs: {errors}")  # fmt: skip
        return 0 if errors == 0 else 1
    finally:
        stop_server(proc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    ap.add_argument("--levels", type=lambda s: [int(x) for x in s.split(",")], default=[8, 32, 64])
    ap.add_argument("--requests-per-client", type=int, default=2, help="questions per client at each level")
    ap.add_argument("--level-seconds", type=float, default=300, help="time bound of each level (no new requests after)")
    ap.add_argument("--ratio-requests", type=int, default=32, help="questions of the side-by-side ratio run")
    ap.add_argument("--ratio-seconds", type=float, default=600, help="time bound of each half of the ratio run")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--k", type=int, default=None, help="passages per question (default: the server's, 5)")
    ap.add_argument("--dtype", default=None, help="in-process engine dtype (server default: float32)")
    ap.add_argument("--llm-url", default=None, help="generate with this OpenAI-compatible server instead")
    args = ap.parse_args()
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
