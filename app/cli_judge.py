"""``citerag judge train`` and ``citerag judge eval``. Only click is imported at module level,
so ``citerag --help`` stays fast (heavy imports happen inside the commands)."""

from __future__ import annotations

import json
import shlex
import sys
from typing import Any

import click

from app.cli_errors import handle_errors


@click.group("judge")
def judge() -> None:
    """Train and evaluate support judges (evidence, claim) -> P(supported)."""


@judge.command("train")
@click.option(
    "--data",
    "data",
    multiple=True,
    required=True,
    metavar="FILE[@N]",
    help="Labelled JSONL (SNLI, WiCE, nli pairs or AttributionBench; detected per line). "
    "FILE@N takes a seeded sample of N pairs. Repeat for more files.",
)
@click.option("--out", "out", required=True, help="Folder to write the judge to.")
@click.option("--base", default=None, help="Base encoder folder or hub id (default: the packaged all-MiniLM-L6-v2).")
@click.option("--max-pairs", type=int, default=None, help="At most N pairs from each file (seeded sample).")
@click.option("--epochs", type=float, default=1.0, show_default=True)
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--max-length", type=int, default=256, show_default=True, help="Tokens per (evidence, claim) input.")
@click.option("--seed", type=int, default=13, show_default=True)
@click.option("--lr", type=float, default=3e-5, show_default=True)
@click.option(
    "--max-steps", type=int, default=None, help="Train for this many optimizer steps (the schedule decays over them)."
)
@click.option(
    "--stop-after-steps",
    type=int,
    default=None,
    help="Stop at this step without shortening the schedule (reproduces a run --max-minutes stopped).",
)
@click.option("--threads", type=int, default=None, help="torch threads (1 is fastest on a busy shared CPU).")
@click.option(
    "--max-minutes",
    type=float,
    default=None,
    help="Safety stop after this much wall time, then save (the schedule counts steps only; the card "
    "records the step reached).",
)
@click.option(
    "--augment",
    type=float,
    default=0.0,
    show_default=True,
    help="Add synthetic pairs (wrong numbers, support inside longer passages, verbatim "
    "sentences, unrelated evidence) as this fraction of the loaded pairs.",
)
@click.option(
    "--augment-kinds",
    default="v2",
    show_default=True,
    help="Comma-separated kinds of synthetic pairs, 'v2' (number,passage,verbatim,unrelated) or 'all' "
    "(adds instruct,question,quote,entity,header,long).",
)
@handle_errors
def train_cmd(
    data: tuple[str, ...],
    out: str,
    base: str | None,
    max_pairs: int | None,
    epochs: float,
    batch_size: int,
    max_length: int,
    seed: int,
    lr: float,
    max_steps: int | None,
    stop_after_steps: int | None,
    threads: int | None,
    max_minutes: float | None,
    augment: float,
    augment_kinds: str,
) -> None:
    """Fine-tune a binary support cross-encoder and save it (fp16 safetensors + card)."""
    import logging

    from verifiers.judge_train import AUGMENT_KINDS, V2_AUGMENT_KINDS, TrainConfig, train_judge

    logging.getLogger("verifiers").setLevel(min(logging.getLogger("citerag").getEffectiveLevel(), logging.INFO))
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = TrainConfig(
        data=list(data),
        out=out,
        base=base,
        max_pairs=max_pairs,
        epochs=epochs,
        batch_size=batch_size,
        max_length=max_length,
        seed=seed,
        lr=lr,
        max_steps=max_steps,
        stop_after_steps=stop_after_steps,
        max_minutes=max_minutes,
        threads=threads,
        augment=augment,
        augment_kinds=_parse_kinds(augment_kinds, V2_AUGMENT_KINDS, AUGMENT_KINDS),
        extra_card={"command": "citerag " + " ".join(shlex.quote(a) for a in sys.argv[1:])},
    )
    path = train_judge(cfg)
    click.echo(str(path))


def _parse_kinds(spec: str, v2: tuple[str, ...], every: tuple[str, ...]) -> tuple[str, ...]:
    """``v2``, ``all`` or a comma-separated list of augmentation kinds (checked by augment_pairs)."""
    if spec.strip() == "v2":
        return v2
    if spec.strip() == "all":
        return every
    return tuple(k.strip() for k in spec.split(",") if k.strip())


@judge.command("eval")
@click.option(
    "--data",
    "data",
    multiple=True,
    required=True,
    metavar="FILE",
    help="Labelled JSONL (AttributionBench claim/references/attribution_label, or a training format).",
)
@click.option(
    "--judge", "judge_name", default="default", show_default=True, help="default, llm, or a judge folder / hub id."
)
@click.option(
    "--split",
    type=click.Choice(["selection", "report", "all", "both"]),
    default="all",
    show_default=True,
    help="Which half of the data, split by question: 'selection' (choose runs and thresholds "
    "here), 'report' (quote figures from here), 'all', or 'both' (score both halves in one "
    "run; --calibrate then fits on the selection half and reports the report half).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--calibrate",
    is_flag=True,
    help="Fit the macro-F1-maximising threshold (on the selection half with --split both). "
    "Nothing is saved without --save-threshold.",
)
@click.option(
    "--save-threshold",
    "save_threshold_flag",
    is_flag=True,
    help="With --calibrate: write the fitted threshold, and the split that chose it, into the "
    "judge's card (citerag_judge.json). Changes what the judge decides from then on.",
)
@click.option("--threshold", type=float, default=None, help="Decision threshold (default: the judge's own).")
@click.option("--limit", type=int, default=None, help="At most N pairs per file (seeded sample).")
@click.option(
    "--bootstrap",
    "resamples",
    type=int,
    default=1000,
    show_default=True,
    help="Bootstrap resamples (over questions) for the 95%% interval of macro-F1.",
)
@click.option("--batch-size", type=int, default=None)
@click.option("--model", default=None, help="Generator for --judge llm (default: the configured one).")
@handle_errors
def eval_cmd(
    data: tuple[str, ...],
    judge_name: str,
    split: str,
    as_json: bool,
    calibrate: bool,
    save_threshold_flag: bool,
    threshold: float | None,
    limit: int | None,
    resamples: int,
    batch_size: int | None,
    model: str | None,
) -> None:
    """Accuracy, macro-F1 (with a bootstrap 95% interval) and per-source figures of a judge
    against human labels; every pair is scored (long claims in parts), the counts say so."""
    from pipeline.errors import ConfigError
    from verifiers.judge_eval import evaluate_judge, evaluate_protocol, load_eval_pairs
    from verifiers.judges import judge_dir, load_judge, save_threshold

    if calibrate and threshold is not None:
        raise ConfigError("--calibrate picks the threshold itself: drop --threshold")
    if save_threshold_flag and not calibrate:
        raise ConfigError("--save-threshold saves what --calibrate fits: add --calibrate")
    if save_threshold_flag and split == "report":
        raise ConfigError(
            "a threshold fitted on the report half would make its figures in-sample: "
            "calibrate with --split selection or --split both"
        )
    target = judge_dir(judge_name) if save_threshold_flag else None
    if save_threshold_flag and target is None:
        raise ConfigError(f"cannot save a threshold for {judge_name!r}: calibrate a judge folder")
    generator = None
    if judge_name == "llm":
        from pathlib import Path

        from app.factory import build_generator
        from pipeline.config import Settings

        # The judge needs only the generator: the index path is never opened.
        settings = Settings(index=Path("."), **({"model": model} if model else {}))
        generator = build_generator(settings)
    pairs = load_eval_pairs(data, limit=limit, split="all" if split == "both" else split)
    judge_obj = load_judge(judge_name, generator=generator, batch_size=batch_size)
    if split == "both":
        result = evaluate_protocol(judge_obj, pairs, threshold=threshold, calibrate=calibrate, resamples=resamples)
    else:
        result = evaluate_judge(judge_obj, pairs, threshold=threshold, calibrate=calibrate, resamples=resamples)
    result.pop("scores")
    result.update(judge=judge_name, data=list(data), split=split)
    if target is not None:
        record: dict[str, Any] = {"data": [str(d) for d in data], "split": "selection" if split == "both" else split}
        if split == "both":
            record.update(protocol=result["protocol"], selection=result["selection"], report=result["report"])
        else:
            record.update(
                n=result["n"],
                macro_f1=result["macro_f1"],
                accuracy=result["accuracy"],
                note=f"threshold fitted on the {split} pairs; these figures are in-sample",
            )
        save_threshold(target, result["threshold"], **record)
        result["saved_to"] = str(target)
    if as_json:
        click.echo(json.dumps(result))
        return
    _print_result(result, judge_name, calibrate)


def _print_result(result: dict[str, Any], judge_name: str, calibrate: bool) -> None:
    saved = (
        " (saved to the card)"
        if result.get("saved_to")
        else (" (not saved: add --save-threshold)" if calibrate else "")
    )
    fitted = (
        f"fitted on the {'selection half' if result['split'] == 'both' else result['split'] + ' pairs'}"
        if calibrate
        else "the judge's own"
    )
    click.echo(f"judge {judge_name}: split {result['split']}, threshold {result['threshold']:.4f} ({fitted}){saved}")
    stats = result.get("judge_stats") or {}
    click.echo(
        f"scored {result['scored']} of {result['n']} pairs, refused {result['refused']}; "
        f"claims judged in parts {stats.get('claims_split', 0)}, evidence with instructions removed "
        f"{stats.get('evidence_with_instructions', 0)}, header-only claims {stats.get('scaffolding_claims', 0)}"
    )
    blocks = (
        [(h, result[h]) for h in ("selection", "report")] if result["split"] == "both" else [(result["split"], result)]
    )
    for name, r in blocks:
        lo, hi = r["macro_f1_ci95"]
        click.echo(
            f"[{name}] n={r['n']} accuracy {r['accuracy']:.4f}  macro-F1 {r['macro_f1']:.4f} "
            f"(95% CI {lo:.4f}-{hi:.4f}, bootstrap over questions)"
        )
        if r.get("held_out_macro_f1") is not None:
            click.echo(
                f"held-out macro-F1 {r['held_out_macro_f1']:.4f} (2-fold inside these pairs: each half at the "
                "threshold calibrated on the other; the calibrated figure above is in-sample)"
            )
        click.echo(f"{'source':<24} {'n':>6} {'accuracy':>9} {'macro-F1':>9}")
        for src, s in r["per_source"].items():
            click.echo(f"{src:<24} {s['n']:>6} {s['accuracy']:>9.4f} {s['macro_f1']:>9.4f}")
    if result.get("pairs_per_second"):
        click.echo(f"({result['pairs_per_second']} pairs/s)")
