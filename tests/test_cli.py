"""The `citerag` command end to end: real index (BM25 + FAISS + MiniLM), real vLLM server.

Error paths must exit non-zero with one line that says what to do.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SAMPLE = Path(__file__).resolve().parents[1] / "pipeline" / "sample_corpus"


def run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "-q", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def error_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines, proc
    return lines[-1]


@pytest.fixture(scope="module")
def sample_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("idx") / "sample"
    proc = run("index", str(SAMPLE), "--index", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "indexed 8 documents" in proc.stdout
    return out


@pytest.fixture(scope="module")
def smollm2_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """SmolLM2 behind a vLLM OpenAI server started by `citerag llm serve`."""
    import socket
    import time

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = (tmp_path_factory.mktemp("llm") / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "llm", "serve", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        start_new_session=True,
    )

    class Handle:
        url = f"http://127.0.0.1:{port}"

    deadline = time.monotonic() + 300
    try:
        while True:
            assert proc.poll() is None, Path(log.name).read_text()[-3000:]
            try:
                if httpx.get(f"{Handle.url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "citerag llm serve did not become healthy"
            time.sleep(1)
        yield Handle()
    finally:
        import signal

        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def source_text(doc_id: str) -> str:
    """The text that spans refer to, re-read through the ingest module."""
    from retrievers.ingest import load_documents

    docs, _ = load_documents(str(SAMPLE))
    return next(d.text for d in docs if d.doc_id == doc_id)


def check_citations(answer: dict[str, Any]) -> None:
    shown = {p["n"]: p for p in answer["passages"]}
    for s in answer["sentences"]:
        assert answer["answer"][s["start"] : s["end"]] == s["text"]
        for n in s["citations"]:
            assert n in shown
    for c in answer["citations"]:
        assert shown[c["n"]]["doc_id"] == c["doc_id"]
        assert source_text(c["doc_id"])[c["start"] : c["end"]] == c["text"]
    for s in answer["sentences"]:
        for q in s.get("quotes", []):
            p = shown[q["n"]]
            assert q["n"] in s["citations"] and p["start"] <= q["start"] < q["end"] <= p["end"]
            assert source_text(p["doc_id"])[q["start"] : q["end"]] == q["text"]


def test_empty_question(tmp_path: Path) -> None:
    proc = run("ask", "   ", "--index", str(tmp_path))
    assert proc.returncode == 2 and "question is empty" in error_line(proc)


def test_missing_index_names_the_command(tmp_path: Path) -> None:
    proc = run("ask", "When?", "--index", str(tmp_path / "nope"))
    assert proc.returncode == 3
    assert f"citerag index PATH --index {tmp_path / 'nope'}" in error_line(proc)


def test_malformed_questions_file(tmp_path: Path) -> None:
    qf = tmp_path / "q.jsonl"
    qf.write_text('{"question": "ok?"}\n{not json\n')
    proc = run("ask", "--questions", str(qf), "--out", str(tmp_path / "a.jsonl"), "--index", str(tmp_path))
    assert proc.returncode == 2 and f"{qf}:2" in error_line(proc)
    assert not (tmp_path / "a.jsonl").exists()


def test_unreachable_llm_server(sample_index: Path) -> None:
    proc = run("ask", "When did the bridge open?", "--index", str(sample_index), "--llm-url", "http://127.0.0.1:9")
    assert proc.returncode == 5
    assert "http://127.0.0.1:9" in error_line(proc) and "citerag llm serve" in error_line(proc)


def test_incompatible_index_is_untouched(sample_index: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(sample_index, bad)
    manifest_file = bad / (bad / "CURRENT").read_text().strip() / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    manifest["format_version"] = 999
    manifest_file.write_text(json.dumps(manifest))
    before = {p.name: p.read_bytes() for p in bad.rglob("*") if p.is_file()}
    proc = run("ask", "When?", "--index", str(bad), "--llm-url", "http://127.0.0.1:9")
    assert proc.returncode == 3 and "citerag index" in error_line(proc)
    assert before == {p.name: p.read_bytes() for p in bad.rglob("*") if p.is_file()}


def test_ask_json_through_vllm_server(sample_index: Path, tiny_vllm_server: Any) -> None:
    proc = run(
        "ask",
        "When did the Golden Gate Bridge open?",
        "--index",
        str(sample_index),
        "--llm-url",
        tiny_vllm_server.url,
        "--json",
        "--max-tokens",
        "24",
    )
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    assert {"question", "answer", "sentences", "citations", "timings", "abstained", "abstention"} <= answer.keys()
    assert answer["passages"][0]["doc_id"] == "golden_gate_bridge.md"
    check_citations(answer)
    if answer["abstained"]:
        assert answer["answer"] == "The documents do not answer this question." and answer["draft"]["answer"]
    # --no-abstain returns the draft itself, with citations to shown passages.
    proc = run(
        "ask",
        "When did the Golden Gate Bridge open?",
        "--index",
        str(sample_index),
        "--llm-url",
        tiny_vllm_server.url,
        "--json",
        "--max-tokens",
        "24",
        "--no-abstain",
    )
    kept = json.loads(proc.stdout)
    assert kept["abstained"] is False and kept["answer"] == answer.get("draft", answer)["answer"]
    check_citations(kept)
    # Nothing in the sample corpus is about football: retrieval finds nothing relevant, so
    # citerag abstains whatever the (random) model wrote, and keeps the draft.
    proc = run(
        "ask",
        "Who won the 1998 FIFA World Cup final?",
        "--index",
        str(sample_index),
        "--llm-url",
        tiny_vllm_server.url,
        "--json",
        "--max-tokens",
        "24",
    )
    off = json.loads(proc.stdout)
    assert off["abstained"] is True and off["citations"] == [] and "draft" in off
    assert any("about the question" in r for r in off["abstention"]["reasons"])


def test_question_longer_than_context(sample_index: Path, tiny_vllm_server: Any) -> None:
    proc = run("ask", "why " * 3000, "--index", str(sample_index), "--llm-url", tiny_vllm_server.url)
    assert proc.returncode == 2 and "context" in error_line(proc)


def test_batch_mode(sample_index: Path, tiny_vllm_server: Any, tmp_path: Path) -> None:
    qf, out = tmp_path / "q.jsonl", tmp_path / "a.jsonl"
    qf.write_text(
        json.dumps({"id": "q1", "question": "Who discovered polonium?"})
        + "\n"
        + json.dumps("How tall is Mount Everest?")
        + "\n"
        + json.dumps({"id": "q3", "question": " "})
        + "\n"
    )
    proc = run(
        "ask",
        "--questions",
        str(qf),
        "--out",
        str(out),
        "--index",
        str(sample_index),
        "--llm-url",
        tiny_vllm_server.url,
        "--max-tokens",
        "16",
        "--no-abstain",
    )
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r.get("id") for r in rows] == ["q1", None, "q3"]
    assert rows[0]["passages"][0]["doc_id"] == "marie_curie.txt"
    assert rows[1]["passages"][0]["doc_id"] == "mount_everest.md"
    assert "empty" in rows[2]["error"]
    for r in rows[:2]:
        check_citations(r)
    assert "1 questions failed" in proc.stdout


@pytest.mark.slow
def test_smollm2_answers_with_a_citation_in_process(sample_index: Path) -> None:
    """The embedded default end to end: in-process vLLM engine with SmolLM2-135M."""
    proc = run("ask", "When did the Golden Gate Bridge open?", "--index", str(sample_index), "--json")
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    assert "1937" in answer["answer"] and answer["abstained"] is False
    assert "golden_gate_bridge.md" in {c["doc_id"] for c in answer["citations"]}
    assert "Document [" not in answer["answer"] and "(Title:" not in answer["answer"]
    check_citations(answer)
    # The year sentence carries the smallest supporting quote of the bridge passage.
    quotes = [q for s in answer["sentences"] if "1937" in s["text"] for q in s.get("quotes", [])]
    assert any("1937" in q["text"] for q in quotes), answer["sentences"]


@pytest.mark.slow
def test_smollm2_abstains_on_a_question_the_corpus_does_not_answer(sample_index: Path) -> None:
    proc = run("ask", "Who won the 1998 FIFA World Cup final?", "--index", str(sample_index), "--json")
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    assert answer["abstained"] is True, answer
    assert answer["answer"] == "The documents do not answer this question." and answer["draft"]["answer"]
    assert answer["abstention"]["reasons"]


@pytest.mark.slow
def test_smollm2_text_output_and_iterative_mode(sample_index: Path, smollm2_server: Any) -> None:
    proc = run("ask", "Who was Marie Curie?", "--index", str(sample_index), "--llm-url", smollm2_server.url)
    assert proc.returncode == 0, proc.stderr
    assert "References:" in proc.stdout and "marie_curie.txt" in proc.stdout
    proc = run(
        "ask",
        "Describe the Golden Gate Bridge.",
        "--index",
        str(sample_index),
        "--llm-url",
        smollm2_server.url,
        "--iterative",
        "--stride",
        "16",
        "--query-tokens",
        "16",
        "--max-tokens",
        "64",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    assert answer["rounds"] >= 2
    check_citations(answer)


# -- --llm-api-key and its deprecated alias ----------------------------------------------


def _ask_settings(
    monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict[str, str] | None = None
) -> tuple[Any, Any]:
    """The Settings `citerag ask ARGS` builds (the factory is stopped there), and the result."""
    from click.testing import CliRunner

    import app.factory
    from app.cli import cli
    from pipeline.errors import ConfigError

    seen: list[Any] = []

    def stop(settings: Any, *a: Any, **kw: Any) -> None:
        seen.append(settings)
        raise ConfigError("stopped before loading anything")

    monkeypatch.setattr(app.factory, "build_pipeline", stop)
    monkeypatch.delenv("CITERAG_LLM_API_KEY", raising=False)
    result = CliRunner().invoke(
        cli, ["ask", "Why?", "--index", "idx", "--llm-url", "http://127.0.0.1:9", *args], env=env
    )
    assert result.exit_code == 2 and seen, result.output
    return seen[0], result


def test_llm_api_key_reaches_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    settings, result = _ask_settings(monkeypatch, ["--llm-api-key", "k1"])
    assert settings.llm_api_key == "k1"
    assert "deprecated" not in result.stderr
    settings, _ = _ask_settings(monkeypatch, [], env={"CITERAG_LLM_API_KEY": "from-env"})
    assert settings.llm_api_key == "from-env"


def test_api_key_on_ask_is_a_deprecated_alias(monkeypatch: pytest.MonkeyPatch) -> None:
    settings, result = _ask_settings(monkeypatch, ["--api-key", "old"])
    assert settings.llm_api_key == "old"
    assert "--api-key is deprecated" in result.stderr and "--llm-api-key" in result.stderr
    # given explicitly, the alias still beats the environment; --llm-api-key beats both
    settings, _ = _ask_settings(monkeypatch, ["--api-key", "old"], env={"CITERAG_LLM_API_KEY": "from-env"})
    assert settings.llm_api_key == "old"
    settings, _ = _ask_settings(monkeypatch, ["--llm-api-key", "new", "--api-key", "old"])
    assert settings.llm_api_key == "new"


def test_commands_that_talk_to_an_llm_server_take_llm_api_key() -> None:
    from click.testing import CliRunner

    from app.cli import cli

    for command in (["ask"], ["revise"], ["eval"], ["attribute"], ["serve"]):
        out = CliRunner().invoke(cli, [*command, "--help"]).output
        assert "--llm-api-key" in out, command
    serve_help = CliRunner().invoke(cli, ["serve", "--help"]).output
    assert "Deprecated" not in serve_help  # serve --api-key is the server's own key
