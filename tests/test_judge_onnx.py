"""The judge on ONNX Runtime (verifiers/judge_onnx.py) and the windowing cost cuts (issue 13).

The real committed default judge is exported into a temporary cache once per module; its
fp32 ONNX scores must equal torch's within 1e-4 on real pairs (the sample corpus as long,
windowed evidence), the int8 ones stay close. The cache logic, ``--judge-runtime`` through
the CLI and the missing-onnxruntime error use a tiny random BERT (exports in a second).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "pipeline" / "sample_corpus"
GG = (CORPUS / "golden_gate_bridge.md").read_text(encoding="utf-8")
CURIE = (CORPUS / "marie_curie.txt").read_text(encoding="utf-8")
LONG = GG + "\n\n" + CURIE  # several windows of the 192-token judge

#: Real pairs: long windowed evidence (the sample corpus) and short NLI-like pairs.
LONG_PAIRS = [
    (LONG, "The Golden Gate Bridge opened to pedestrians on May 27, 1937."),
    (LONG, "The Golden Gate Bridge opened in 1975."),
    (LONG, "Marie Curie won two Nobel Prizes."),
    (GG, "Construction of the bridge began in January 1933 under Joseph Strauss."),
    (CURIE, "Curie discovered polonium and radium."),
]
SHORT_PAIRS = [
    ("A man is playing a guitar on a stage.", "A man is performing music."),
    ("A man is playing a guitar on a stage.", "A woman is sleeping at home."),
    ("Two dogs run through a snowy field.", "Animals are outside."),
    ("Two dogs run through a snowy field.", "The dogs are asleep indoors."),
    ("The meeting was moved from Monday to Wednesday.", "The meeting takes place on Wednesday."),
    ("The meeting was moved from Monday to Wednesday.", "The meeting was cancelled."),
]
PAIRS = LONG_PAIRS + SHORT_PAIRS
S = len(LONG_PAIRS)  # index of the first short pair


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    d = tmp_path_factory.mktemp("citerag-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CITERAG_CACHE", str(d))
        mp.delenv("CITERAG_JUDGE_RUNTIME", raising=False)
        yield d


@pytest.fixture(scope="module")
def torch_judge(cache: Path) -> Any:
    from verifiers.judges import load_judge

    return load_judge("default", runtime="torch", device="cpu")


@pytest.fixture(scope="module")
def torch_scores(torch_judge: Any) -> list[float]:
    scores = torch_judge.judge(PAIRS)
    torch_judge.windows_of_pairs = torch_judge.last_stats["windows"]
    return scores


def test_fp32_onnx_equals_torch_on_real_pairs(cache: Path, torch_judge: Any, torch_scores: list[float]) -> None:
    from verifiers.judge_onnx import OnnxCrossEncoderJudge
    from verifiers.judges import load_judge

    judge = load_judge("default", runtime="onnx")
    assert isinstance(judge, OnnxCrossEncoderJudge) and judge.variant == "onnx"
    assert judge.onnx_file.is_relative_to(cache) and judge.onnx_file.name == "model.onnx"
    scores = judge.judge(PAIRS)
    assert judge.last_stats["windows"] == torch_judge.windows_of_pairs > len(PAIRS)  # really windowed
    assert max(abs(a - b) for a, b in zip(scores, torch_scores)) < 1e-4
    assert judge.threshold == torch_judge.threshold and judge.max_length == torch_judge.max_length
    # the judge is not random: it tells the clear short cases apart
    assert scores[S] > judge.threshold > scores[S + 1] and scores[S + 4] > judge.threshold > scores[S + 5]


def test_int8_onnx_stays_close_to_torch(cache: Path, torch_judge: Any, torch_scores: list[float]) -> None:
    """Dynamic int8 moves scores: on AttributionBench dev the mean shift is ~0.03 and ~5% of
    decisions flip (BENCHMARKS.md); here the mean shift must stay under 0.05, no score may
    move by more than 0.35, and at least 9 of the 11 decisions must agree."""
    from verifiers.judges import load_judge

    judge = load_judge("default", runtime="onnx-int8")
    assert judge.onnx_file.name == "model.int8.onnx"
    assert judge.onnx_file.stat().st_size < 0.5 * (judge.onnx_file.parent / "model.onnx").stat().st_size
    scores = judge.judge(PAIRS)
    diffs = [abs(a - b) for a, b in zip(scores, torch_scores)]
    assert sum(diffs) / len(diffs) < 0.05 and max(diffs) < 0.35
    agree = sum((a >= judge.threshold) == (b >= judge.threshold) for a, b in zip(scores, torch_scores))
    assert agree >= len(PAIRS) - 2


def test_static_int8_builds_from_the_committed_calibration_windows(
    cache: Path, torch_judge: Any, torch_scores: list[float]
) -> None:
    """Static int8 (activation ranges from the committed training-data windows) moves scores
    more than dynamic int8 (BENCHMARKS.md: mean shift ~0.05 on AttributionBench dev): here the
    mean shift must stay under 0.1 and at least 8 of the 11 decisions must agree."""
    from verifiers.judge_onnx import CALIBRATION_NAME, read_calibration
    from verifiers.judges import DEFAULT_JUDGE_DIR, load_judge, read_card

    calib = DEFAULT_JUDGE_DIR / CALIBRATION_NAME
    assert calib.stat().st_size < 200_000 and len(read_calibration(calib)) >= 200
    trained_on = " ".join(read_card(DEFAULT_JUDGE_DIR)["training"]["data"])
    assert "attributionbench" not in trained_on  # the windows come from the training sets only
    judge = load_judge("default", runtime="onnx-int8-static")
    assert judge.onnx_file.name == "model.int8-static.onnx" and judge.onnx_file.is_relative_to(cache)
    side = json.loads((judge.onnx_file.parent / "model.int8-static.onnx.json").read_text())
    assert side["calibration"]["file"] == CALIBRATION_NAME and side["calibration"]["method"] == "MinMax"
    assert side["calibration"]["windows"] == len(read_calibration(calib))
    scores = judge.judge(PAIRS)
    diffs = [abs(a - b) for a, b in zip(scores, torch_scores)]
    assert sum(diffs) / len(diffs) < 0.1
    agree = sum((a >= judge.threshold) == (b >= judge.threshold) for a, b in zip(scores, torch_scores))
    assert agree >= len(PAIRS) - 3
    assert scores[S] > scores[S + 1] and scores[S + 4] > scores[S + 5]


def test_no_skip_layer_norm_kernel_in_the_built_models(cache: Path) -> None:
    """Recipe 2 keeps Add + LayerNormalization (ORT's SkipLayerNormalization CPU kernel was
    3.3x slower) and the session does not fuse them back."""
    import onnx

    from verifiers.judges import load_judge

    judge = load_judge("default", runtime="onnx-int8")
    ops = {n.op_type for n in onnx.load(str(judge.onnx_file)).graph.node}
    assert "LayerNormalization" in ops and "SkipLayerNormalization" not in ops and "QAttention" in ops


def test_auto_follows_the_default_card(cache: Path) -> None:
    from verifiers.judges import ONNX_RUNTIMES, default_judge_dir, read_card, resolve_runtime

    recorded = read_card(default_judge_dir())["runtime"]
    assert recorded["cpu"] in ONNX_RUNTIMES
    assert resolve_runtime("auto", str(default_judge_dir()), "cpu") == recorded["cpu"]
    # the rule the card records: least CPU time among runtimes within the tolerance of torch
    sel, rate = recorded["selection_macro_f1"], recorded["ab_pairs_per_cpu_s"]
    eligible = [n for n in sel if abs(sel[n] - sel["torch"]) <= recorded["tolerance"]]
    assert recorded["cpu"] == max(eligible, key=lambda n: rate[n])


def test_windowing_cuts_leave_scores_unchanged(torch_judge: Any, torch_scores: list[float]) -> None:
    """Batching by token length (not characters), the token cache and de-duplication give the
    scores of judging every pair alone, without any cache, to float noise."""
    from verifiers.judges import CrossEncoderJudge

    alone = []
    for pair in PAIRS:
        torch_judge.__dict__.pop("_offset_cache", None)
        alone += torch_judge.judge([pair])
    assert max(abs(a - b) for a, b in zip(alone, torch_scores)) < 1e-5

    class CharSorted(CrossEncoderJudge):
        def pair_length(self, pair: tuple[str, str]) -> int:
            return len(pair[0]) + len(pair[1])

    old = CharSorted.__new__(CharSorted)
    old.__dict__.update({k: v for k, v in torch_judge.__dict__.items() if k != "_offset_cache"})
    assert max(abs(a - b) for a, b in zip(old.judge(PAIRS), torch_scores)) < 1e-5
    # duplicates are scored once: 3 copies of the pairs cost the windows of one
    old.judge(PAIRS * 3)
    assert old.last_stats["windows"] == torch_judge.windows_of_pairs
    # the cached tokenisation is the tokenizer's
    assert torch_judge.pair_length(PAIRS[0]) == len(
        torch_judge.tokenizer(PAIRS[0][0], add_special_tokens=False)["input_ids"]
    ) + len(torch_judge.tokenizer(PAIRS[0][1], add_special_tokens=False)["input_ids"])


# ---------------------------------------------------------------- the cache, with a tiny BERT


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_model import build_tiny_bert

    words = " ".join(p[0] + " " + p[1] for p in SHORT_PAIRS).lower().replace(".", " . ").split()
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), words, ("not_entailment", "entailment"))


def test_cache_builds_once_and_rebuilds_when_the_weights_change(
    tiny_bert: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from verifiers.judge_onnx import RECIPE, onnx_model, weights_sha256

    monkeypatch.setenv("CITERAG_CACHE", str(tmp_path / "cache"))
    f = onnx_model(tiny_bert, "onnx")
    side = json.loads((f.parent / "model.onnx.json").read_text())
    assert side["source_sha256"] == weights_sha256(tiny_bert) and side["recipe"] == RECIPE
    assert f.parent.name == f"{side['source_sha256'][:16]}-r{RECIPE}"  # one folder per weights and recipe
    first = f.stat().st_mtime_ns
    assert onnx_model(tiny_bert, "onnx") == f and f.stat().st_mtime_ns == first  # cached: not rebuilt
    assert not list(f.parent.glob(".tmp-*"))  # nothing half-written left behind

    # a sidecar that names other weights (or another recipe) means rebuild
    (f.parent / "model.onnx.json").write_text(json.dumps({**side, "source_sha256": "0" * 64}))
    assert onnx_model(tiny_bert, "onnx") == f and f.stat().st_mtime_ns != first
    assert json.loads((f.parent / "model.onnx.json").read_text()) == side

    # other weights: another folder, built from them
    other = tmp_path / "other"
    shutil.copytree(tiny_bert, other)
    import torch
    from transformers import BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(other)
    with torch.no_grad():
        model.classifier.bias += 1.0
    model.save_pretrained(other)
    g = onnx_model(other, "onnx-int8")
    assert g.parent != f.parent and g.name == "model.int8.onnx"
    assert json.loads((g.parent / "model.int8.onnx.json").read_text())["source_sha256"] == weights_sha256(other)


def test_static_build_is_deterministic_and_recorded(
    tiny_bert: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A judge folder without its own calibration windows uses the default judge's; the same
    windows give the same model bytes, and the sidecar names them by sha256."""
    from pipeline.models import sha256_file
    from verifiers.judge_onnx import CALIBRATION_NAME, RECIPE, onnx_model, weights_sha256
    from verifiers.judges import DEFAULT_JUDGE_DIR, resolve_runtime, write_card

    monkeypatch.setenv("CITERAG_CACHE", str(tmp_path / "cache"))
    f = onnx_model(tiny_bert, "onnx-int8-static")
    side = json.loads((f.parent / "model.int8-static.onnx.json").read_text())
    assert side["recipe"] == RECIPE and side["source_sha256"] == weights_sha256(tiny_bert)
    assert side["calibration"]["sha256"] == sha256_file(DEFAULT_JUDGE_DIR / CALIBRATION_NAME)
    first = f.read_bytes()
    assert onnx_model(tiny_bert, "onnx-int8-static", rebuild=True).read_bytes() == first
    write_card(tiny_bert, {"runtime": {"cpu": "onnx-int8-static"}})
    assert resolve_runtime("auto", str(tiny_bert), "cpu") == "onnx-int8-static"


def test_missing_onnxruntime_is_a_clear_error_and_auto_falls_back(
    tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.errors import ConfigError
    from verifiers.judges import CrossEncoderJudge, load_judge, resolve_runtime, write_card

    card = {"runtime": {"cpu": "onnx-int8"}}
    write_card(tiny_bert, card)
    assert resolve_runtime("auto", str(tiny_bert), "cpu") == "onnx-int8"
    assert resolve_runtime("auto", str(tiny_bert), "cuda") == "torch"  # the torch path stays for GPUs
    with pytest.raises(ConfigError, match="CPU only"):
        resolve_runtime("onnx", str(tiny_bert), "cuda")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    with pytest.raises(ConfigError, match="pip install onnxruntime"):
        load_judge(str(tiny_bert), runtime="onnx")
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    assert isinstance(load_judge(str(tiny_bert), device="cpu"), CrossEncoderJudge)  # auto: torch, with a warning
    with pytest.raises(ConfigError, match="unknown judge runtime"):
        load_judge(str(tiny_bert), runtime="tensorrt")


def _cli(*args: str, cache: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "HF_HUB_OFFLINE": "1", "CITERAG_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
    full.pop("CITERAG_JUDGE_RUNTIME", None)
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "-q", *args], capture_output=True, text=True, timeout=300, env=full, cwd=ROOT
    )


def test_judge_runtime_option_through_the_cli(tiny_bert: Path, tmp_path: Path) -> None:
    data = tmp_path / "pairs.jsonl"
    rows = [
        {"premise": e, "hypothesis": c, "label": "entailment" if i % 2 == 0 else "contradiction"}
        for i, (e, c) in enumerate(SHORT_PAIRS)
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ("judge", "eval", "--data", str(data), "--judge", str(tiny_bert), "--json", "--bootstrap", "10")
    proc = _cli("--judge-runtime", "onnx-int8", *args, cache=tmp_path / "flag")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["n"] == len(rows)
    assert sorted(p.name for p in (tmp_path / "flag").rglob("*.onnx")) == ["model.int8.onnx", "model.onnx"]
    # the environment variable chooses too (here torch: nothing is built), and a wrong value
    # is refused before any model loads
    proc = _cli(*args, cache=tmp_path / "env", env={"CITERAG_JUDGE_RUNTIME": "torch"})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["n"] == len(rows) and not list(tmp_path.glob("env/**/*.onnx"))
    proc = _cli("--judge-runtime", "fast", *args, cache=tmp_path / "bad")
    assert proc.returncode == 2 and "fast" in proc.stderr


def test_int8_at_batch_size_one_scores_a_pair_as_it_scores_it_alone(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dynamic int8 scales each forward pass's activations by that pass's range, so at the
    default batch a pair's score depends on its batch mates. ``--judge-batch-size 1``
    (``$CITERAG_JUDGE_BATCH_SIZE``) gives every window its own pass: scores are the same in any
    company and any order."""
    from verifiers.judges import load_judge

    monkeypatch.setenv("CITERAG_JUDGE_BATCH_SIZE", "1")
    judge = load_judge("default", runtime="onnx-int8")
    assert judge.batch_size == 1
    together = judge.judge(PAIRS)
    alone = [judge.judge([p])[0] for p in PAIRS]
    reordered = judge.judge(PAIRS[::-1])[::-1]
    assert together == alone == reordered
    assert load_judge("default", runtime="onnx-int8", batch_size=4).batch_size == 4  # an explicit size wins


@pytest.mark.parametrize("raw", ["0", "-2", "many"])
def test_a_bad_judge_batch_size_is_refused_by_name(raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.errors import ConfigError
    from verifiers.judges import load_judge

    monkeypatch.setenv("CITERAG_JUDGE_BATCH_SIZE", raw)
    with pytest.raises(ConfigError, match="CITERAG_JUDGE_BATCH_SIZE"):
        load_judge("default", runtime="torch")
