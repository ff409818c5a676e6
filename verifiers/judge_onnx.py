"""The cross-encoder judge on ONNX Runtime, fp32 or int8, built from the torch weights on first use.

Why: on a CPU the torch judge scores about 10 windows of 192 tokens a second per core, and
AttributionBench-length evidence needs several windows per pair. ONNX Runtime with the fused
BERT operators (attention, skip layer norm, bias-GELU: ``onnxruntime.transformers``) is faster
at the same numbers (fp32, within float noise), and dynamic int8 quantization of the weights
(per output channel) roughly halves the time again at a small cost in agreement; which one
``--judge-runtime auto`` uses on a CPU is measured by ``bench/bench_judge_speed.py`` and
recorded in the judge card.

Recipe 2 leaves residual + layer norm as ``Add`` + ``LayerNormalization`` instead of fusing
them into ``SkipLayerNormalization`` (and keeps ORT from re-fusing them when a session loads):
onnxruntime 1.31's CPU SkipLayerNormalization kernel took 3.3x the time of the two plain
operators on the judge's activations, a fifth of the int8 model's time. ``onnx-int8-static``
quantizes the weight MatMuls statically (QDQ, activation ranges from the committed
calibration windows, see ``bench/make_judge_calibration.py``) and the fused attention
dynamically (static quantization has no fused-attention operator); it is kept for comparison:
on this CPU it is slower and less exact than dynamic int8 (BENCHMARKS.md).

No ONNX file is committed. :func:`onnx_model` builds one into
``cache_dir()/judge-onnx/<sha256 of the weights>-r<RECIPE>/`` (works offline, from a fresh clone): the
torch model is exported with eager attention (the pattern the fusion recognises), fused, and
for int8 quantized from the fused fp32 file. Each file is written to a temporary name and
renamed into place, and a sidecar ``<file>.json`` records the sha256 of the weights it was
built from and the recipe; a file whose sidecar does not match is rebuilt, so two processes
building at once, or an interrupted build, never leave a half-written model in use.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError, ModelNotFoundError
from pipeline.models import cache_dir, sha256_file
from pipeline.protocols import Pair
from verifiers.judges import CrossEncoderJudge, _load_tokenizer, read_card

log = logging.getLogger(__name__)

#: Bump when the export recipe changes: cached files built by another recipe are rebuilt.
RECIPE = 2
VARIANTS = {"onnx": "model.onnx", "onnx-int8": "model.int8.onnx", "onnx-int8-static": "model.int8-static.onnx"}
OPSET = 17
#: Calibration windows of ``onnx-int8-static``: the judge folder's own, else the default judge's.
CALIBRATION_NAME = "calibration_windows.jsonl.gz"
#: How ``onnx-int8-static`` fixes activation ranges (minimum and maximum over the windows).
CALIBRATION_METHOD = "MinMax"
CALIBRATION_BATCH = 16
#: ORT's session-time fusion that would turn Add + LayerNormalization back into the slow kernel.
DISABLED_OPTIMIZERS = ["SkipLayerNormFusion"]
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def _require_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise ConfigError(
            "the onnx judge runtimes need onnxruntime (and onnx to build the model): "
            "`pip install onnxruntime onnx`, or use --judge-runtime torch"
        ) from exc
    return onnxruntime


def weights_sha256(model_dir: str | Path) -> str:
    """sha256 of the judge's weight file: what a cached ONNX file must have been built from."""
    d = Path(model_dir)
    for name in _WEIGHT_FILES:
        if (d / name).is_file():
            return sha256_file(d / name)
    raise ModelNotFoundError(
        f"{d} has no {' or '.join(_WEIGHT_FILES)}: the onnx judge runtimes build from a local judge folder"
    )


def build_record(model_dir: str | Path, variant: str) -> dict[str, Any]:
    """What the sidecar of a current build says; anything else means rebuild."""
    import onnxruntime

    record: dict[str, Any] = {
        "source_sha256": weights_sha256(model_dir),
        "variant": variant,
        "recipe": RECIPE,
        "onnxruntime": onnxruntime.__version__,
    }
    if variant == "onnx-int8-static":
        f = calibration_file(model_dir)
        record["calibration"] = {
            "file": f.name,
            "sha256": sha256_file(f),
            "windows": len(read_calibration(f)),
            "method": CALIBRATION_METHOD,
            "batch": CALIBRATION_BATCH,
            "format": "QDQ MatMul (weights int8 per channel, activations uint8) + dynamic QAttention",
        }
    return record


def calibration_file(model_dir: str | Path) -> Path:
    """The calibration windows for ``model_dir``: its own file, else the default judge's."""
    from verifiers.judges import DEFAULT_JUDGE_DIR

    for d in (Path(model_dir), DEFAULT_JUDGE_DIR):
        if (d / CALIBRATION_NAME).is_file():
            return d / CALIBRATION_NAME
    raise ModelNotFoundError(f"no {CALIBRATION_NAME} in {model_dir} or {DEFAULT_JUDGE_DIR}: onnx-int8-static needs one")


def read_calibration(f: Path) -> list[tuple[str, str]]:
    """(evidence window, claim) pairs of a calibration file, in file order."""
    import gzip

    with gzip.open(f, "rt", encoding="utf-8") as fh:
        return [(row["evidence"], row["claim"]) for row in map(json.loads, fh)]


def _sidecar(f: Path) -> Path:
    return f.with_name(f.name + ".json")


def _is_current(f: Path, record: dict[str, Any]) -> bool:
    side = _sidecar(f)
    if not (f.is_file() and side.is_file()):
        return False
    try:
        return json.loads(side.read_text(encoding="utf-8")) == record
    except (OSError, json.JSONDecodeError):
        return False


def _replace_into(target: Path, write: Any) -> None:
    """Run ``write(tmp_path)`` and rename the result onto ``target`` (atomic on one file system)."""
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        tmp.chmod(0o644)  # mkstemp made it private; the cache is shared like any download
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def onnx_model(model_dir: str | Path, variant: str = "onnx-int8", *, rebuild: bool = False) -> Path:
    """The ONNX file of the judge in ``model_dir`` (``onnx``: fused fp32; ``onnx-int8``: that,
    dynamically quantized; ``onnx-int8-static``: statically quantized), built once into the
    cache and rebuilt when its sidecar does not match the weights, the recipe or the installed
    onnxruntime."""
    if variant not in VARIANTS:
        raise ConfigError(f"unknown onnx judge variant {variant!r}: use one of {', '.join(VARIANTS)}")
    _require_onnxruntime()
    record = build_record(model_dir, variant)
    # One folder per weights and recipe: checkouts of different recipes sharing a cache keep
    # their own files instead of rebuilding each other's on every run.
    folder = cache_dir() / "judge-onnx" / f"{record['source_sha256'][:16]}-r{RECIPE}"
    target = folder / VARIANTS[variant]
    if not rebuild and _is_current(target, record):
        return target
    folder.mkdir(parents=True, exist_ok=True)
    if variant == "onnx":
        log.info("building the fp32 ONNX judge into %s (once)", target)
        _replace_into(target, lambda tmp: _export_fused(Path(model_dir), tmp))
    elif variant == "onnx-int8":
        fp32 = onnx_model(model_dir, "onnx", rebuild=rebuild)
        log.info("quantizing the ONNX judge to int8 into %s (once)", target)
        _replace_into(target, lambda tmp: _quantize(fp32, tmp))
    else:
        fp32 = onnx_model(model_dir, "onnx", rebuild=rebuild)
        log.info("quantizing the ONNX judge to static int8 into %s (once)", target)
        _replace_into(target, lambda tmp: _quantize_static(fp32, tmp, Path(model_dir)))
    _replace_into(_sidecar(target), lambda tmp: tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8"))
    return target


def _export_fused(model_dir: Path, out: Path) -> None:
    """torch -> ONNX (eager attention, fp32, dynamic batch and length) -> fused BERT operators."""
    import torch
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(
        str(model_dir), dtype=torch.float32, attn_implementation="eager"
    ).eval()
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    sample = tok(
        ["an example of evidence", "more"], ["a claim", "another claim here"], padding=True, return_tensors="pt"
    )
    # Positional export arguments follow forward()'s order (input_ids, attention_mask, token_type_ids).
    names = [n for n in inspect.signature(model.forward).parameters if n in sample]
    raw = out.with_name(out.name + ".raw")
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer notes
            torch.onnx.export(
                model,
                tuple(sample[k] for k in names),
                str(raw),
                input_names=names,
                output_names=["logits"],
                dynamic_axes={**{k: {0: "batch", 1: "sequence"} for k in names}, "logits": {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
            )
        cfg = model.config
        options = FusionOptions("bert")
        options.enable_skip_layer_norm = False  # the fused kernel is the slower one (module docstring)
        fused = optimize_model(
            str(raw),
            model_type="bert",
            num_heads=cfg.num_attention_heads,
            hidden_size=cfg.hidden_size,
            opt_level=1,
            optimization_options=options,
        )
        fused.save_model_to_file(str(out))
    finally:
        raw.unlink(missing_ok=True)


def _quantize(fp32: Path, out: Path) -> None:
    """Dynamic int8: weights per output channel (per-tensor lost twice as many decisions in a
    probe on AttributionBench windows), activations quantized on the fly."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(fp32),
        str(out),
        weight_type=QuantType.QInt8,
        per_channel=True,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},  # the fused operators carry no types
    )


def _quantize_static(fp32: Path, out: Path, model_dir: Path) -> None:
    """Static int8: the MatMuls as QDQ (weights per output channel, activation ranges the
    minimum and maximum over the calibration windows, in file order: the same file gives the
    same model), the fused attention dynamically (QAttention; static formats have none)."""
    import numpy as np
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    tok = _load_tokenizer(str(model_dir))
    from transformers import AutoConfig

    # the judge's window length: its card's, else what the model can read
    limit = int(getattr(AutoConfig.from_pretrained(str(model_dir)), "max_position_embeddings", 512))
    max_length = min(int(read_card(model_dir).get("max_length") or 512), limit)
    pairs = read_calibration(calibration_file(model_dir))

    class Windows(CalibrationDataReader):
        def __init__(self) -> None:
            self.at = 0

        def get_next(self) -> dict[str, Any] | None:
            batch = pairs[self.at : self.at + CALIBRATION_BATCH]
            self.at += CALIBRATION_BATCH
            if not batch:
                return None
            # as the judge tokenises a window (the default judge's windows fit as they are; a
            # judge with a shorter input than the windows' 192 tokens sees them cut to fit)
            feats = tok(
                [e for e, _ in batch],
                [c for _, c in batch],
                padding=True,
                truncation="longest_first",
                max_length=max_length,
                return_tensors="np",
            )
            names = ("input_ids", "attention_mask", "token_type_ids")
            return {k: feats[k].astype(np.int64) for k in names if k in feats}

    typed = out.with_name(out.name + ".typed")
    attn = out.with_name(out.name + ".attn")
    try:
        # the fused operators need symbolic shape inference to give the MatMuls' inputs a type
        onnx.save(SymbolicShapeInference.infer_shapes(onnx.load(str(fp32)), auto_merge=True), str(typed))
        quantize_dynamic(
            str(typed),
            str(attn),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["Attention"],
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
        quantize_static(
            str(attn),
            str(out),
            Windows(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
            calibrate_method=getattr(CalibrationMethod, CALIBRATION_METHOD),
            op_types_to_quantize=["MatMul"],
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        typed.unlink(missing_ok=True)
        attn.unlink(missing_ok=True)


def _threads() -> int:
    """ORT intra-op threads: ``$OMP_NUM_THREADS`` like torch, else 0 (ORT's default: all cores)."""
    try:
        return max(0, int(os.environ.get("OMP_NUM_THREADS", "0")))
    except ValueError:
        return 0


class OnnxCrossEncoderJudge(CrossEncoderJudge):
    """:class:`CrossEncoderJudge` (same windowing, labels, threshold) scored by ONNX Runtime on the CPU."""

    def __init__(self, path: str, *, variant: str = "onnx-int8", threads: int | None = None, **kw: Any) -> None:
        self.variant = variant
        self.threads = _threads() if threads is None else threads
        super().__init__(path, **kw)

    def _load_model(self, path: str, device: str | None) -> Any:
        ort = _require_onnxruntime()
        from transformers import AutoConfig

        if not Path(path).is_dir():
            raise ConfigError(f"the onnx judge runtimes build from a local judge folder, not {path!r}")
        self.path = str(path)
        self.card = read_card(path)
        self.device = "cpu"
        self.tokenizer = _load_tokenizer(self.path)
        self.onnx_file = onnx_model(path, self.variant)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(self.onnx_file), opts, providers=["CPUExecutionProvider"], disabled_optimizers=DISABLED_OPTIMIZERS
        )
        self.input_names = [i.name for i in self.session.get_inputs()]
        return AutoConfig.from_pretrained(self.path)

    def score_windows(self, pairs: Sequence[Pair]) -> list[float]:
        import numpy as np

        feats = self.features(pairs, "np")
        logits = self.session.run(None, {k: feats[k].astype(np.int64) for k in self.input_names})[0]
        logits = logits.astype(np.float32)
        if self.support_id is None:
            probs = 1.0 / (1.0 + np.exp(-logits[:, 0]))
        else:
            shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
            probs = (shifted / shifted.sum(axis=-1, keepdims=True))[:, self.support_id]
        return [float(x) for x in probs]
