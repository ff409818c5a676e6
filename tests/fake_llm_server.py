"""A slow OpenAI-compatible completion server in the standard library, for fault tests.

``python tests/fake_llm_server.py PORT [--delay S] [--piece-delay S] [--echo] [--model ID]`` serves what
``OpenAIGenerator`` uses: ``/health``, ``/v1/models``, ``/tokenize`` and ``/detokenize`` (one
token per UTF-8 byte, no chat template), and ``/v1/completions`` with a canned answer, whole
after ``--delay`` seconds or streamed (``"stream": true``, chunked like vLLM's server) one word
every ``--piece-delay`` seconds. ``GET /stats`` counts the completions started (a test knows
when a request is in flight) and the streams finished or aborted by the client. The generator
is not what these tests check (they kill it, or shut the citerag server down around it); the
tiny vLLM server is too fast to be caught mid-answer.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ANSWER = "The Golden Gate Bridge opened in 1937 [1]. It spans the Golden Gate strait [1]."


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in separate writes: no 40 ms delayed-ACK stalls
    server: FakeServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass

    def _json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        if self.path == "/health":
            self._json(200, {})
        elif self.path == "/v1/models":
            model = self.server.model
            self._json(200, {"data": [{"id": model, "owned_by": "fake", "max_model_len": 100000}]})
        elif self.path == "/stats":
            srv = self.server
            self._json(200, {"completions_started": srv.started, "streams_finished": srv.finished,
                             "streams_aborted": srv.aborted})  # fmt: skip
        else:
            self._json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        if self.path == "/tokenize":
            if "messages" in body:
                self._json(400, {"error": {"message": "this model has no chat template"}})
            else:
                self._json(200, {"tokens": list(body["prompt"].encode())})
        elif self.path == "/detokenize":
            self._json(200, {"prompt": bytes(body["tokens"]).decode("utf-8", "replace")})
        elif self.path == "/v1/completions" and body.get("model", self.server.model) != self.server.model:
            self._json(404, {"error": {"message": f"The model `{body['model']}` does not exist."}})  # as vLLM says it
        elif self.path == "/v1/completions":
            with self.server.lock:
                self.server.started += 1
            if body.get("stream"):
                self._stream()
            else:
                with self.server.slots:
                    time.sleep(self.server.delay)
                texts = [self.server.answer(p) for p in body["prompt"]]
                choices = [{"index": i, "text": t, "finish_reason": "stop"} for i, t in enumerate(texts)]
                self._json(200, {"choices": choices})
        else:
            self._json(404, {"error": {"message": f"no route {self.path}"}})

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _stream(self) -> None:
        try:
            self._send_stream()
        except (BrokenPipeError, ConnectionResetError):  # the client closed the stream
            with self.server.lock:
                self.server.aborted += 1
            self.close_connection = True
            return
        with self.server.lock:
            self.server.finished += 1

    def _send_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        words = ANSWER.split(" ")
        for i, word in enumerate(words):
            if self.server.cut_after is not None and i >= self.server.cut_after:
                self._chunk(b"")  # a clean end of the body, with neither a finish reason nor [DONE]
                return
            time.sleep(self.server.piece_delay)
            text = word if i == 0 else " " + word
            event = {"choices": [{"index": 0, "text": text, "finish_reason": None}]}
            self._chunk(f"data: {json.dumps(event)}\n\n".encode())
        end = {"choices": [{"index": 0, "text": "", "finish_reason": "stop"}]}
        self._chunk(f"data: {json.dumps(end)}\n\n".encode())
        self._chunk(b"data: [DONE]\n\n")
        self._chunk(b"")


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True

    def answer(self, prompt: list[int]) -> str:
        return "echo: " + bytes(prompt).decode("utf-8", "replace") if self.echo else ANSWER

    def __init__(
        self,
        port: int,
        delay: float,
        piece_delay: float,
        cut_after: int | None = None,
        *,
        echo: bool = False,
        model: str = "fake",
        capacity: int | None = None,
    ) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.delay, self.piece_delay = delay, piece_delay
        #: Answer "echo: <the prompt>" (a different answer per prompt) instead of ANSWER.
        self.echo = echo
        #: The model id /v1/models reports.
        self.model = model
        #: Whole completions served at a time (the rest wait): a server with a fixed throughput.
        self.slots: threading.Semaphore | contextlib.nullcontext[None] = (
            threading.Semaphore(capacity) if capacity else contextlib.nullcontext()
        )
        #: End every stream cleanly after this many words, as a dying proxy would.
        self.cut_after = cut_after
        self.started = self.finished = self.aborted = 0
        self.lock = threading.Lock()


def start_process(port: int, *args: str) -> subprocess.Popen[bytes]:
    """This server as a process on ``port`` (options as on the command line), once it answers:
    for tests that kill it."""
    import httpx

    proc = subprocess.Popen([sys.executable, __file__, str(port), *args])
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, "the fake LLM server exited"
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        assert time.monotonic() < deadline, "the fake LLM server did not start"
        time.sleep(0.05)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("port", type=int)
    ap.add_argument("--delay", type=float, default=0.0, help="seconds before a whole completion")
    ap.add_argument("--piece-delay", type=float, default=0.05, help="seconds before each streamed word")
    ap.add_argument("--echo", action="store_true", help='answer "echo: <the prompt>" instead of the canned answer')
    ap.add_argument("--model", default="fake", help="the model id /v1/models reports")
    args = ap.parse_args()
    FakeServer(args.port, args.delay, args.piece_delay, echo=args.echo, model=args.model).serve_forever()


if __name__ == "__main__":
    main()
