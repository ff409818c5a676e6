"""``citerag eval``: ALCE citation metrics, RARR metrics and answer correctness of a file.

Only click and the standard library are imported at module level, so ``citerag --help``
stays fast; the scorer and the judge load inside the command.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import click

from app.cli_common import llm_options, ray_options
from app.cli_errors import handle_errors

log = logging.getLogger("citerag.eval")

#: Rows of the human-readable table: (section, figure, label, the count of examples behind it).
TABLE = (
    ("citation", "recall", "citation recall", "n"),
    ("citation", "precision", "citation precision", "n"),
    ("citation", "f1", "citation F1", "n"),
    ("rarr", "attribution", "attribution", "n"),
    ("rarr", "attributed", "sentences attributed", "n"),
    ("rarr", "attribution_original", "attribution before revision", "n_revised"),
    ("rarr", "preservation", "preservation", "n_revised"),
    ("rarr", "f1", "attribution-preservation F1", "n_revised"),
    ("answer", "str_em", "str_em (ASQA)", "n_str_em"),
    ("answer", "str_hit", "str_hit (ASQA)", "n_str_em"),
    ("answer", "em", "exact match", "n_answers"),
    ("answer", "answer_in_output", "answer in output", "n_answers"),
    ("answer", "qampari_precision", "QAMPARI precision", "n_answers"),
    ("answer", "qampari_recall", "QAMPARI recall", "n_answers"),
    ("answer", "qampari_recall_top5", "QAMPARI recall@5", "n_answers"),
    ("answer", "qampari_f1", "QAMPARI F1", "n_answers"),
    ("answer", "qampari_f1_top5", "QAMPARI F1@5", "n_answers"),
    ("agreement", "cited_but_unused_rate", "cited but unused", "cited"),
    ("agreement", "used_but_uncited_rate", "used but uncited", "used"),
    ("agreement", "exact_rate", "cites exactly what it used", "sentences"),
)


@click.command("eval")
@click.option(
    "--pred",
    "pred_file",
    required=True,
    type=click.Path(path_type=str),
    help="Predictions: ALCE result JSON, or JSONL from `citerag ask --out` / `citerag revise --out`.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", "alce", "ask", "revise"]),
    default="auto",
    show_default=True,
    help="Format of --pred (auto: detected from the content).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with every metric.")
@click.option(
    "--report",
    "report_dir",
    type=click.Path(path_type=str),
    help="Write a self-contained HTML report (index.html) into this folder.",
)
@click.option(
    "--out",
    "out_file",
    type=click.Path(path_type=str),
    help="Write one JSONL row per example with each sentence's decisions.",
)
@click.option(
    "--judge",
    "judge_name",
    default="default",
    show_default=True,
    help="Support judge: default, or a local folder / hub id of an NLI model.",
)
@click.option("--threshold", type=float, default=None, help="Support threshold (default: the judge's calibrated one).")
@click.option(
    "--at-most-citations",
    type=int,
    default=3,
    show_default=True,
    help="Citations judged per sentence, first ones first (ALCE); 0: all.",
)
@click.option("--qampari", is_flag=True, help="ALCE's QAMPARI mode: outputs are comma-separated answer lists.")
@click.option(
    "--no-truncate",
    is_flag=True,
    help="Keep outputs whole (ALCE cuts them at the first newline; numbers are then not comparable).",
)
@click.option("--no-attribution", is_flag=True, help="Skip RARR attribution (every sentence against every document).")
@click.option(
    "--ask-citations",
    type=click.Choice(["final", "written"]),
    default="final",
    show_default=True,
    help="citerag ask answers: score the citations citerag shows (final) or the generator's markers as written.",
)
@click.option("--batch-size", type=int, default=None, help="Judge batch size (default: the judge's own).")
@click.option(
    "--agreement",
    is_flag=True,
    help="Also citation-use agreement: ablate each shown passage through the generator and compare the "
    "passages each sentence used with those it cites (ask and ALCE files).",
)
@click.option(
    "--agreement-method",
    type=click.Choice(["loo", "contextcite"]),
    default="loo",
    show_default=True,
    help="Agreement: leave-one-out ablation, or ContextCite's sparse fit of random ablations.",
)
@click.option(
    "--agreement-threshold",
    type=float,
    default=1.0,
    show_default=True,
    help="Agreement: a passage is used when removing it lowers the sentence's log-probability by this many nats.",
)
@llm_options(
    "Agreement: ",
    model_help="the generator that wrote the answers (the embedded default, a local path or a hub id).",
    backend_help="in-process generator (ignored with --llm-url).",
    llm_url_help="OpenAI-compatible vLLM server to score with.",
)
@click.option(
    "--max-doc-tokens",
    type=int,
    default=200,
    show_default=True,
    help="Agreement: each document is cut to this many tokens in the rebuilt prompt, as `citerag ask` does.",
)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@ray_options("the judging of --pred")
@handle_errors
def eval_cmd(
    pred_file: str,
    fmt: str,
    as_json: bool,
    report_dir: str | None,
    out_file: str | None,
    judge_name: str,
    threshold: float | None,
    at_most_citations: int,
    qampari: bool,
    no_truncate: bool,
    no_attribution: bool,
    ask_citations: str,
    batch_size: int | None,
    agreement: bool,
    agreement_method: str,
    agreement_threshold: float,
    backend: str,
    model: str,
    llm_url: str | None,
    llm_api_key: str | None,
    max_model_len: int,
    max_doc_tokens: int,
    no_progress: bool,
    ray_target: str | None,
    ray_workers: int | None,
    ray_batch_size: int,
) -> None:
    """Score attributed text: ALCE citation recall / precision / F1, RARR attribution and
    preservation, and answer correctness (ASQA str_em, NQ exact match, answer in output).

    Every (evidence, sentence) pair of the file is judged once, in batches. Figures are
    fractions in [0, 1] (ALCE prints them x100).

    With --agreement, the generator (--model, or --llm-url) also scores every answer with each
    shown passage removed, and the passages each sentence depended on are compared with the
    ones it cites: the cited-but-unused and used-but-uncited rates. Use the model that wrote
    the answers; for ALCE files the prompt is citerag's, not the one the answers came from.
    """
    from pathlib import Path

    from eval.formats import read_predictions
    from eval.scoring import EvalConfig, evaluate
    from pipeline.errors import ConfigError
    from pipeline.io import write_jsonl_atomic
    from pipeline.progress import progress_enabled

    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"--threshold must be between 0 and 1 (got {threshold})")
    if at_most_citations < 0:
        raise ConfigError(f"--at-most-citations must be 0 (all) or more (got {at_most_citations})")
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"--batch-size must be positive (got {batch_size})")
    if judge_name == "llm":
        raise ConfigError(
            "`citerag eval` cannot use the llm judge (it needs a generator): use --judge default or a model folder"
        )
    if agreement and agreement_threshold <= 0:
        raise ConfigError(f"--agreement-threshold must be a positive number of nats (got {agreement_threshold})")
    if agreement and ray_target:
        raise ConfigError("--agreement runs in this process only: drop --ray, or run the agreement without it")
    if agreement and max_doc_tokens < 8:
        raise ConfigError(f"--max-doc-tokens must be at least 8 (got {max_doc_tokens})")
    preds = read_predictions(pred_file, fmt, ask_citations=ask_citations)
    if agreement and preds.kind == "revise":
        raise ConfigError(
            "--agreement needs the question and the passages shown to the generator: "
            "use it on `citerag ask` or ALCE files, not `citerag revise` output"
        )
    for line in preds.skipped:
        log.warning("skipped %s", line)
    if "qampari" in Path(pred_file).name.lower() and not qampari:
        log.warning("the file name says QAMPARI, where ALCE scores comma-separated lists: add --qampari to do the same")

    from verifiers.judges import load_judge

    judge = load_judge(judge_name, threshold=threshold, batch_size=batch_size)
    config = EvalConfig(
        threshold=float(threshold if threshold is not None else judge.threshold),
        at_most_citations=at_most_citations or None,
        qampari=qampari,
        truncate=not no_truncate,
        attribution=not no_attribution,
    )
    failed: dict[int, str] = {}
    if ray_target:
        from app.batch import EvalJob, FailedExample, merge_evaluation
        from app.ray_jobs import run_on_ray

        job = EvalJob(judge_name, threshold, batch_size, config)
        outputs = run_on_ray(job, preds.examples, target=ray_target, workers=ray_workers, batch_size=ray_batch_size,
                             progress=progress_enabled(not no_progress))  # fmt: skip
        failed = {i: o.error for i, o in enumerate(outputs) if isinstance(o, FailedExample)}
        for i, why in failed.items():
            log.warning("example %s failed: %s", preds.examples[i].id, why)
        evaluation = merge_evaluation(config, outputs)
    else:
        evaluation = evaluate(
            preds.examples, judge.judge, config, chunk_size=1024, progress=progress_enabled(not no_progress)
        )
    extra: dict[str, Any] = {}
    per_example: list[Any] = []
    if agreement:
        from app.factory import scoring_generator

        with scoring_generator(backend, model, llm_url, llm_api_key, max_model_len) as generator:
            section, per_example = agreement_section(
                evaluation,
                generator,
                method=agreement_method,
                threshold=agreement_threshold,
                max_doc_tokens=max_doc_tokens,
                progress=progress_enabled(not no_progress),
            )
        section["model"] = llm_url or model
        extra["agreement"] = lambda _evaluation: section
    metrics = {"file": preds.path, "format": preds.kind, **evaluation.metrics(extra), "skipped": len(preds.skipped)}
    metrics["judge"] = {"name": judge_name, **metrics["judge"]}
    if failed:
        metrics["failed"] = len(failed)
    if out_file:
        rows = evaluation.rows()
        for row, sentences in zip(rows, per_example):
            row["agreement"] = list(sentences)
        if failed:  # the failed examples' error rows, back in their places
            ok = iter(rows)
            rows = [
                {"id": ex.id, "error": failed[i]} if i in failed else next(ok) for i, ex in enumerate(preds.examples)
            ]
        write_jsonl_atomic(out_file, rows)
    if report_dir:
        from eval.report import write_report

        path = write_report(report_dir, evaluation, metrics, title=f"citerag eval: {Path(pred_file).name}")
        click.echo(f"report: {path}", err=True)
    click.echo(json.dumps(metrics, ensure_ascii=False, indent=2) if as_json else format_table(metrics))


def agreement_section(
    evaluation: Any,
    generator: Any,
    *,
    method: str = "loo",
    threshold: float = 1.0,
    max_doc_tokens: int = 200,
    progress: bool = False,
) -> tuple[dict[str, Any], list[Any]]:
    """Citation-use agreement of every scored example (its output as the scorer read it, so
    ALCE's first-line cut applies): the file-level figures and, per example, each sentence's
    cited / used passages. Examples that cannot be attributed are counted in ``skipped``."""
    from eval.alce import clean_output
    from eval.saliency.agreement import citation_use_agreement
    from eval.saliency.context import answer_from_parts
    from pipeline.prompting import PromptConfig
    from pipeline.types import Passage

    answers = []
    for r in evaluation.results:
        ex = r.example
        text, _ = clean_output(ex.output, first_line=evaluation.config.truncate)
        passages = tuple(Passage(f"doc-{i}", d.text, d.title, end=len(d.text)) for i, d in enumerate(ex.docs, start=1))
        answers.append(answer_from_parts(ex.question, passages, text))
    log.info("agreement: ablating the passages of %d answers through the generator (%s)", len(answers), method)
    agg = citation_use_agreement(
        generator,
        answers,
        threshold=threshold,
        method=method,
        cfg=PromptConfig(max_doc_tokens=max_doc_tokens),
        skip_errors=True,
        progress=progress,
    )
    for i, why in agg.skipped:
        log.warning("agreement: example %s left out: %s", evaluation.results[i].example.id, why)
    d = agg.to_dict()
    per_answer = d.pop("per_answer")
    d["skipped"] = len(agg.skipped)
    return {"method": method, "threshold_nats": threshold, **d}, per_answer


def format_table(metrics: dict[str, Any]) -> str:
    """The figures that apply, in percent, with the number of examples behind each."""
    s = metrics["settings"]
    judge = metrics["judge"]
    lines = [
        f"{metrics['file']}: {metrics['n']} {metrics['format']} examples"
        + (f" ({metrics['skipped']} skipped)" if metrics.get("skipped") else "")
        + (f" ({metrics['failed']} failed, left out)" if metrics.get("failed") else ""),
        f"judge {judge['name']} (threshold {s['threshold']:.3f}; "
        f"{judge['pairs']} pairs in {judge['rounds']} round{'' if judge['rounds'] == 1 else 's'})",
        "",
        f"{'metric':<30} {'value':>7} {'n':>6}",
    ]
    for section, key, label, count in TABLE:
        figures = metrics.get(section) or {}
        if figures.get(key) is not None:
            lines.append(f"{label:<30} {100 * figures[key]:>6.1f}% {figures[count]:>6}")
    if metrics.get("truncated"):
        lines.append(
            f"\n{metrics['truncated']} outputs were cut at their first newline (ALCE's rule; --no-truncate keeps them)"
        )
    return "\n".join(lines)
