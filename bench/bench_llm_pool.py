"""Several generator servers (``--llm-url A --llm-url B``): the same 64 prompts through
:class:`~pipeline.generators.openai_pool.OpenAIPool` over 1, 2 and 3 servers, side by side in
one run.

The servers are tests/fake_llm_server.py in threads, each with a fixed throughput: at most
``--capacity`` completions at a time, each held ``--delay`` seconds (a saturated vLLM replica
in miniature). Without a model, what is measured is the spread: N servers should take about
1/N of the time, less the client's own overhead (one thread and one HTTP request per prompt,
tokenizing through the server's ``/tokenize``). Every run's answers are checked equal and in
input order.

    .venv/bin/python bench/bench_llm_pool.py [--prompts 64] [--delay 0.1] [--capacity 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--delay", type=float, default=0.1, help="seconds each completion is held")
    ap.add_argument("--capacity", type=int, default=4, help="completions a server serves at a time")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from fake_llm_server import FakeServer

    from pipeline.generators.openai_pool import OpenAIPool
    from pipeline.generators.server import free_port
    from pipeline.types import GenerationParams

    servers = []
    for _ in range(3):
        srv = FakeServer(free_port(), args.delay, 0.0, echo=True, capacity=args.capacity)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
    urls = [f"http://127.0.0.1:{s.server_address[1]}" for s in servers]
    prompts = [f"prompt {i}: when did the bridge open?" for i in range(args.prompts)]
    want = ["echo: " + p for p in prompts]
    params = GenerationParams(max_tokens=16)

    times: dict[int, list[float]] = {1: [], 2: [], 3: []}
    shares: dict[int, list[int]] = {}
    for _ in range(args.repeats):
        for n in times:  # interleaved, so a burst of load from elsewhere hits every setting
            before = [s.started for s in servers]
            pool = OpenAIPool(urls[:n], per_server=args.capacity, timeout=60)
            pool.connect()
            t0 = time.perf_counter()
            out = pool.generate(prompts, params)
            times[n].append(time.perf_counter() - t0)
            pool.close()
            assert [g.text for g in out] == want, "answers changed or out of order"
            shares[n] = [s.started - b for s, b in zip(servers, before)][:n]

    ideal = args.prompts / args.capacity * args.delay
    print(f"{args.prompts} prompts, each server {args.capacity} at a time x {args.delay} s "
          f"(one server's floor {ideal:.2f} s), median of {args.repeats}")  # fmt: skip
    print("| servers | seconds (median) | requests per server (last run) |")
    print("| --- | --- | --- |")
    med = {n: statistics.median(t) for n, t in times.items()}
    for n in times:
        print(f"| {n} | {med[n]:.2f} | {' / '.join(map(str, shares[n]))} |")
    print(f"ratios: 1 server / 2 servers = {med[1] / med[2]:.2f}x, 1 server / 3 servers = {med[1] / med[3]:.2f}x")
    for srv in servers:
        srv.shutdown()
        srv.server_close()


if __name__ == "__main__":
    main()
