"""Batch jobs on Ray (``--ray local``): a real local Ray instance, real index and models, and the
same output as the single-process run, row for row; failed rows become error rows in place.

Each ``--ray local`` run starts Ray (~10 s here) and one engine or judge per actor, so the CLI
runs are few. The ordering and error-row logic is also tested without Ray, on fakes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from app.batch import error_row, merge_evaluation, process_or_split
from pipeline.errors import ClusterUnavailableError, ConfigError, InputError

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """``citerag -q ARGS`` from this checkout (Ray's workers import it through the driver's path)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "-q", *args], capture_output=True, text=True, timeout=timeout, env=env,
        cwd=ROOT,
    )  # fmt: skip


def rows_of(path: Path) -> list[dict[str, Any]]:
    """The output rows without their timings (wall-clock seconds and the batch size they ran in)."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    for r in rows:
        (r.get("report") or {}).pop("timings", None)
        r.pop("timings", None)
    return rows


def write_jsonl(path: Path, rows: Sequence[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# -- without Ray: batches that fail, error rows, merged evaluations --------------------------------


class _Job:
    """Items are ints; the worker fails a batch holding 3 (not an error of ours: a bug)."""

    def error_output(self, item: Any, message: str) -> dict[str, Any]:
        return error_row({"id": item}, message)


class _Worker:
    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    def process(self, items: Sequence[int], progress: bool = False) -> list[dict[str, Any]]:
        self.calls.append(list(items))
        if 3 in items:
            raise ZeroDivisionError("boom")
        return [{"id": i, "square": i * i} for i in items]


def test_a_failing_batch_is_retried_row_by_row_and_only_the_bad_row_becomes_an_error() -> None:
    worker = _Worker()
    out = process_or_split(_Job(), worker, [1, 2, 3, 4])  # type: ignore[arg-type]
    assert [r["id"] for r in out] == [1, 2, 3, 4]
    assert out[2] == {"id": 3, "error": "ZeroDivisionError: boom"}
    assert [r.get("square") for r in out] == [1, 4, None, 16]
    assert worker.calls == [[1, 2, 3, 4], [1], [2], [3], [4]]


def test_error_row_keeps_the_input_row() -> None:
    assert error_row({"id": "q3", "question": " "}, "empty") == {"id": "q3", "question": " ", "error": "empty"}


def test_merged_evaluation_keeps_order_and_sums_the_judge_figures() -> None:
    from app.batch import FailedExample, ScoredBatch
    from eval.scoring import EvalConfig

    cfg = EvalConfig(threshold=0.5)
    outs = [ScoredBatch("r0", 3, 2, 1), ScoredBatch("r1"), FailedExample("x", "bad"), ScoredBatch("r3", 4, 1, 1)]
    ev = merge_evaluation(cfg, outs)
    assert ev.results == ("r0", "r1", "r3")
    assert (ev.judge_pairs, ev.judge_rounds, ev.judge_calls) == (7, 2, 2)


def test_addresses_are_checked_before_ray_is_asked() -> None:
    from app.ray_jobs import _host_port, check_reachable
    from pipeline.generators.server import free_port

    assert _host_port("10.0.0.5:6379") == ("10.0.0.5", 6379)
    assert _host_port("ray://head:10001") == ("head", 10001)
    with pytest.raises(ConfigError, match="not local, auto"):
        check_reachable("headnode")
    with pytest.raises(ClusterUnavailableError, match="ray start --head") as err:
        check_reachable(f"127.0.0.1:{free_port()}")
    assert err.value.exit_code == 5


def test_actors_get_the_engine_and_judge_settings_of_the_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a cluster an actor does not inherit the driver's environment: vLLM's CPU settings (the
    KV-cache size, the engine in process), the judge runtime and the offline hub go along."""
    from app.ray_jobs import worker_env
    from pipeline.generators.base import VLLM_CPU_ENV, _is_vllm_cpu_build

    monkeypatch.setenv("CITERAG_JUDGE_RUNTIME", "onnx")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("UNRELATED_SECRET", "x")
    env = worker_env()
    assert env["CITERAG_JUDGE_RUNTIME"] == "onnx" and env["HF_HUB_OFFLINE"] == "1"
    assert "UNRELATED_SECRET" not in env and "PATH" not in env
    if _is_vllm_cpu_build():  # the driver's value, else vLLM's CPU default
        for key in ("VLLM_CPU_KVCACHE_SPACE", "VLLM_ENABLE_V1_MULTIPROCESSING", "VLLM_TARGET_DEVICE"):
            assert env[key] == os.environ.get(key, VLLM_CPU_ENV[key])


def test_ray_options_need_a_batch_input(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from app.cli import cli

    r = CliRunner().invoke(cli, ["ask", "why?", "--index", str(tmp_path), "--ray", "local"])
    assert r.exit_code == InputError.exit_code and "--questions" in r.output


# -- the CLI on a real local Ray instance -----------------------------------------------------------


def test_an_unreachable_cluster_is_a_clear_error_and_writes_nothing(tmp_path: Path, sample_index: Path) -> None:
    from pipeline.generators.server import free_port

    qf = write_jsonl(tmp_path / "q.jsonl", ["Who discovered polonium?"])
    out = tmp_path / "a.jsonl"
    proc = run("ask", "--questions", str(qf), "--out", str(out), "--index", str(sample_index),
               "--ray", f"127.0.0.1:{free_port()}")  # fmt: skip
    assert proc.returncode == ClusterUnavailableError.exit_code, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot reach the Ray cluster") and "--ray local" in last
    assert not out.exists() and list(tmp_path.iterdir()) == [qf]


QUESTIONS = [
    {"id": "q1", "question": "Who discovered polonium?"},
    "How tall is Mount Everest?",
    {"id": "q3", "question": " "},  # empty: an error row, in its place
    {"id": "q4", "question": "When did the Golden Gate Bridge open?"},
    {"id": "q5", "question": "What did Marie Curie study?"},
]


@pytest.mark.slow
def test_ask_on_ray_with_in_process_engines_equals_the_single_process_run(
    tmp_path: Path, sample_index: Path, tiny_model_dir: Path
) -> None:
    """Two actors, each with its own in-process vLLM engine (greedy), answer batches of two
    questions: the rows are those of one process answering the whole file. The judge runs as
    ONNX fp32, whose scores do not depend on which rows share a batch (int8 quantizes each
    batch's activations with the batch's own range)."""
    qf = write_jsonl(tmp_path / "q.jsonl", QUESTIONS)
    common = ["ask", "--questions", str(qf), "--index", str(sample_index), "--model", str(tiny_model_dir),
              "--max-tokens", "12"]  # fmt: skip
    single, ray = tmp_path / "single.jsonl", tmp_path / "ray.jsonl"
    p1 = run("--judge-runtime", "onnx", *common, "--out", str(single))
    assert p1.returncode == 0, p1.stderr
    p2 = run("--judge-runtime", "onnx", *common, "--out", str(ray),
             "--ray", "local", "--ray-workers", "2", "--ray-batch-size", "2")  # fmt: skip
    assert p2.returncode == 0, p2.stderr
    a, b = rows_of(single), rows_of(ray)
    assert [r.get("id") for r in b] == ["q1", None, "q3", "q4", "q5"]
    assert "empty" in b[2]["error"] and "error" not in b[0]
    assert b == a
    assert p1.stdout.replace(str(single), "O") == p2.stdout.replace(str(ray), "O")
    assert "1 questions failed" in p2.stdout


def test_revise_and_eval_on_ray_through_an_llm_server_equal_the_single_process_run(
    tmp_path: Path, sample_index: Path, fake_llm: str
) -> None:
    """`revise --input` whose actors are clients of an OpenAI-compatible server, then `eval
    --pred` of its output, each on Ray and in one process: the same rows and figures."""
    texts = [
        {"id": "t1", "text": "The Golden Gate Bridge opened in 1937. It is in San Francisco."},
        "Marie Curie was born in Warsaw in 1867.",
        {"id": "t3", "text": "Mount Everest is the highest mountain above sea level."},
    ]
    inp = write_jsonl(tmp_path / "in.jsonl", texts)
    common = ["revise", "--input", str(inp), "--index", str(sample_index), "--llm-url", fake_llm, "--samples", "1"]
    single, ray = tmp_path / "single.jsonl", tmp_path / "ray.jsonl"
    p1 = run("--judge-runtime", "onnx", *common, "--out", str(single))
    assert p1.returncode == 0, p1.stderr
    p2 = run("--judge-runtime", "onnx", *common, "--out", str(ray), "--ray", "local", "--ray-workers", "2",
             "--ray-batch-size", "1")  # fmt: skip
    assert p2.returncode == 0, p2.stderr
    a, b = rows_of(single), rows_of(ray)
    assert [r.get("id") for r in b] == ["t1", None, "t3"] and all(r["claims"] for r in b)
    assert b == a
    assert p1.stdout.replace(str(single), "O") == p2.stdout.replace(str(ray), "O")

    e1, e2 = tmp_path / "e1.jsonl", tmp_path / "e2.jsonl"
    q1 = run("--judge-runtime", "onnx", "eval", "--pred", str(single), "--json", "--out", str(e1))
    assert q1.returncode == 0, q1.stderr
    q2 = run("--judge-runtime", "onnx", "eval", "--pred", str(single), "--json", "--out", str(e2),
             "--ray", "local", "--ray-workers", "2", "--ray-batch-size", "2")  # fmt: skip
    assert q2.returncode == 0, q2.stderr
    m1, m2 = json.loads(q1.stdout), json.loads(q2.stdout)
    m1.pop("judge"), m2.pop("judge")  # pairs and rounds are counted per batch on Ray
    assert m2 == m1 and m2["n"] == 3 and m2["rarr"]["attribution"] is not None
    assert rows_of(e2) == rows_of(e1)
