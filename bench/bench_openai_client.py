"""The OpenAI-compatible client: citerag's httpx client (pipeline.generators.openai_http)
against the official ``openai`` client, side by side in one run, on a local stub server.

The stub answers ``/v1/completions`` with a canned vLLM-shaped body: a scoring answer (32
choices, each with ``prompt_logprobs`` for 400 prompt tokens, what ``score`` reads) and a
generation answer (32 choices of 64 tokens with ``token_ids``). Both clients send the same
body (the openai client puts vLLM's fields in ``extra_body``) and read the same fields back;
the times include parsing. Also times ``import`` of each client in a fresh interpreter.

    .venv/bin/python bench/bench_openai_client.py [--requests 30]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def canned(kind: str) -> bytes:
    if kind == "score":
        plp = [None] + [{str(7 + i): {"logprob": -1.25, "rank": 3, "decoded_token": "tok"}} for i in range(399)]
        choices = [{"index": i, "text": "x", "finish_reason": "length", "prompt_logprobs": plp} for i in range(32)]
    else:
        choices = [
            {"index": i, "text": "word " * 64, "finish_reason": "length", "token_ids": list(range(64))}
            for i in range(32)
        ]
    body = {"id": "c", "object": "text_completion", "created": 0, "model": "m", "choices": choices}
    return json.dumps(body).encode()


BODIES = {"score": canned("score"), "generate": canned("generate")}


class Stub(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        out = BODIES["score" if "prompt_logprobs" in req else "generate"]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args: object) -> None:
        pass


def import_seconds(module: str) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=30)
    args = ap.parse_args()
    import openai

    from pipeline.generators.openai_http import OpenAIGenerator

    server = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    ours = OpenAIGenerator(url, "m")
    theirs = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
    prompts = [[1, 2, 3] * 133] * 32

    def ours_score() -> float:
        ch = ours._post("/v1/completions", {"model": "m", "prompt": prompts, "max_tokens": 1, "prompt_logprobs": 0})
        return sum(c["prompt_logprobs"][1]["7"]["logprob"] for c in ch["choices"])

    def theirs_score() -> float:
        r = theirs.completions.create(model="m", prompt=prompts, max_tokens=1, extra_body={"prompt_logprobs": 0})
        return sum(c.model_extra["prompt_logprobs"][1]["7"]["logprob"] for c in r.choices)

    def ours_generate() -> int:
        ch = ours._post(
            "/v1/completions", {"model": "m", "prompt": prompts, "max_tokens": 64, "return_token_ids": True}
        )
        return sum(len(c["token_ids"]) for c in ch["choices"])

    def theirs_generate() -> int:
        r = theirs.completions.create(model="m", prompt=prompts, max_tokens=64, extra_body={"return_token_ids": True})
        return sum(len(c.model_extra["token_ids"]) for c in r.choices)

    rows = []
    for task, a, b in (("score", ours_score, theirs_score), ("generate", ours_generate, theirs_generate)):
        assert a() == b()
        ta, tb = [], []
        for _ in range(args.requests):  # alternate so both see the same machine load
            t = time.perf_counter()
            a()
            ta.append(time.perf_counter() - t)
            t = time.perf_counter()
            b()
            tb.append(time.perf_counter() - t)
        rows.append((task, statistics.median(ta), statistics.median(tb)))
    imp = [(import_seconds("httpx"), import_seconds("openai")) for _ in range(3)]
    rows.append(("import", statistics.median(i[0] for i in imp), statistics.median(i[1] for i in imp)))
    server.shutdown()
    print(f"{'task':<10}{'httpx (ours) ms':>18}{'openai ms':>12}{'ratio':>8}")
    for task, a, b in rows:
        print(f"{task:<10}{a * 1e3:>18.1f}{b * 1e3:>12.1f}{b / a:>8.2f}")
    print("ratio: openai/ours " + ", ".join(f"{task} {b / a:.2f}x" for task, a, b in rows))


if __name__ == "__main__":
    main()
