"""Session-wide fixtures: offline environment, the tiny Llama, and one vLLM engine / server
over it per session (each takes ~20 s to start on a 2-core CPU), and one index of the sample
corpus for the server, web and API-fuzz tests (read only: a test that writes an index builds
its own)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

log = logging.getLogger(__name__)


@pytest.fixture(scope="session", autouse=True)
def _offline_env() -> Iterator[None]:
    """No model hub here; vLLM's CPU defaults (KV cache 1 GiB, no usage stats)."""
    from pipeline.generators.base import vllm_env

    saved = dict(os.environ)
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    vllm_env()
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-initialised tiny Llama + byte-level BPE tokenizer (see tests/tiny_model.py)."""
    from tiny_model import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_vllm(tiny_model_dir: Path) -> Iterator[object]:
    """One in-process ``VLLMGenerator`` over the tiny model for the whole session."""
    pytest.importorskip("vllm")
    from pipeline.generators.vllm_local import VLLMGenerator

    # Start it the way the CLI does, with numba (imported by bm25s) already loaded: vLLM's
    # in-process kernel scan crashed on llvmlite's objects (see vllm_local._harden_kernel_scan).
    try:
        import llvmlite.binding  # noqa: F401
    except ImportError:
        pass
    gen = VLLMGenerator(str(tiny_model_dir), max_model_len=2048)
    yield gen
    gen.close()


@pytest.fixture(scope="session")
def tiny_vllm_server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """One vLLM OpenAI-compatible server over the tiny model on a free loopback port."""
    pytest.importorskip("vllm")
    from pipeline.generators.server import start_vllm_server

    log_file = tmp_path_factory.mktemp("vllm-server") / "server.log"
    handle = start_vllm_server(str(tiny_model_dir), log_file=log_file)
    try:
        handle.wait_healthy(timeout=300)
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="session")
def smollm2_dir() -> str:
    """The converted SmolLM2-135M-Instruct folder (converted once into the model cache)."""
    from pipeline.errors import ModelNotFoundError
    from pipeline.models import resolve_generator

    try:
        return resolve_generator(None)
    except ModelNotFoundError as exc:
        pytest.skip(f"SmolLM2 weights not installed: {exc}")


@pytest.fixture(scope="session")
def sample_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample corpus indexed with the real embedder (MiniLM, FAISS, bm25s), once per session."""
    from retrievers.index import build_index

    out = tmp_path_factory.mktemp("sample-idx") / "sample"
    build_index(str(Path(__file__).resolve().parents[1] / "pipeline" / "sample_corpus"), str(out), progress=False)
    return out


@pytest.fixture(scope="session")
def fake_llm() -> Iterator[str]:
    """tests/fake_llm_server.py in a thread, an OpenAI-compatible completions server without a
    model: it answers "... opened in 1937 [1]. ... [1].", for CLI runs that need no real LLM."""
    import threading

    from fake_llm_server import FakeServer

    from pipeline.generators.server import free_port

    srv = FakeServer(free_port(), delay=0.0, piece_delay=0.0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
