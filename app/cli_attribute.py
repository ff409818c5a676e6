"""``citerag attribute``: which evidence an answer actually depended on (saliency).

Imports only click at module level, so ``citerag --help`` stays fast.
"""

from __future__ import annotations

from typing import Any

import click

from app.cli_common import llm_options
from app.cli_errors import handle_errors

_METHOD_CHOICES = ("loo", "contextcite", "ig", "ixg", "all")


@click.command("attribute")
@click.argument("answer_file", required=False, type=click.Path(path_type=str))
@click.option("--question", default=None, help="The question (with --passages and --answer, instead of ANSWER_FILE).")
@click.option(
    "--passages",
    "passages_file",
    type=click.Path(path_type=str),
    help='JSONL of the passages shown, in order ({"text", "title"}).',
)
@click.option("--answer", "answer_text", default=None, help="The answer text, with its [n] markers.")
@click.option(
    "--method",
    "methods",
    multiple=True,
    type=click.Choice(_METHOD_CHOICES),
    default=("loo",),
    show_default=True,
    help="Attribution method; repeat for several. ig/ixg need --backend transformers.",
)
@click.option(
    "--level",
    type=click.Choice(["passage", "sentence"]),
    default="passage",
    show_default=True,
    help="Attribute to whole passages or to their sentences.",
)
@click.option(
    "--sentence",
    "sentence",
    type=int,
    default=None,
    help="Answer sentence (from 1) for the text output, --html and --png (default: all; 1 for pictures).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON (JSONL for several answers).")
@click.option(
    "--html", "html_file", type=click.Path(path_type=str), help="Write an HTML heatmap of the evidence for --sentence."
)
@click.option(
    "--png", "png_file", type=click.Path(path_type=str), help="Write a PNG plot of per-source scores for --sentence."
)
@click.option("--faithfulness", is_flag=True, help="Also check each method: top-k removal drop vs random, and LDS.")
@click.option("-k", "--k", type=int, default=1, show_default=True, help="Faithfulness: sources removed.")
@click.option("--masks", "n_masks", type=int, default=64, show_default=True, help="ContextCite: random ablation masks.")
@click.option("--n-steps", type=int, default=16, show_default=True, help="Integrated gradients: integration points.")
@click.option(
    "--batch-size", type=int, default=4, show_default=True, help="Gradient methods: sequences per forward pass."
)
@click.option(
    "--no-token-matrix",
    is_flag=True,
    help="Gradient methods: one backward pass per sentence, not per answer token (faster; no token matrix).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@llm_options(
    model_help="The generator that wrote the answer: the embedded default, a local path or a hub id.",
    llm_url_help="OpenAI-compatible vLLM server (ablation methods only).",
)
@click.option(
    "--max-doc-tokens",
    type=int,
    default=200,
    show_default=True,
    help="Each document is cut to this many tokens, as `citerag ask` does.",
)
@handle_errors
def attribute_cmd(
    answer_file: str | None,
    question: str | None,
    passages_file: str | None,
    answer_text: str | None,
    methods: tuple[str, ...],
    level: str,
    sentence: int | None,
    as_json: bool,
    html_file: str | None,
    png_file: str | None,
    faithfulness: bool,
    k: int,
    n_masks: int,
    n_steps: int,
    batch_size: int,
    no_token_matrix: bool,
    seed: int,
    backend: str,
    model: str,
    llm_url: str | None,
    llm_api_key: str | None,
    max_model_len: int,
    max_doc_tokens: int,
) -> None:
    """Which passages (or evidence sentences, or tokens) each answer sentence depended on.

    ANSWER_FILE is `citerag ask --json` output (or `ask --out` JSONL); or give --question,
    --passages FILE.jsonl and --answer TEXT. Scores are in nats: how much a source raised the
    sentence's log-probability. Use the same --model (and prompt settings) that wrote the
    answer. Ablation methods (loo, contextcite) score all masked prompts in one batched call;
    gradient methods (ig, ixg) need --backend transformers.
    """
    import json

    from eval.saliency import GRADIENT_METHODS, attribute, resolve_methods
    from pipeline.errors import ConfigError, InputError
    from pipeline.progress import progress_enabled
    from pipeline.prompting import PromptConfig

    answers = _read_input(answer_file, question, passages_file, answer_text)
    names = resolve_methods(methods)
    if (html_file or png_file) and len(answers) != 1:
        raise InputError(
            f"--html and --png draw one answer; the file holds {len(answers)}: pass a file with one answer"
        )
    gradient = [m for m in names if m in GRADIENT_METHODS]
    if gradient and (llm_url or backend != "transformers"):
        raise ConfigError(
            f"--method {'/'.join(gradient)} needs gradients, which only the transformers backend gives: "
            "add --backend transformers" + (" and drop --llm-url" if llm_url else "")
        )
    for opt, value, low in (
        ("--masks", n_masks, 2),
        ("--n-steps", n_steps, 1),
        ("--batch-size", batch_size, 1),
        ("-k", k, 1),
        ("--max-doc-tokens", max_doc_tokens, 8),
    ):
        if value < low:
            raise ConfigError(f"{opt} must be at least {low} (got {value})")
    if sentence is not None and not all(1 <= sentence <= len(a.sentences) for a in answers):
        shortest = min(len(a.sentences) for a in answers)
        raise ConfigError(
            f"--sentence must be between 1 and {shortest} (the shortest answer's sentence count); got {sentence}"
        )

    from app.factory import scoring_generator

    with scoring_generator(backend, model, llm_url, llm_api_key, max_model_len) as generator:
        reports = attribute(
            generator,
            answers,
            names,
            level,
            n_masks=n_masks,
            seed=seed,
            n_steps=n_steps,  # type: ignore[arg-type]
            batch_size=batch_size,
            token_matrix=not no_token_matrix,
            cfg=PromptConfig(max_doc_tokens=max_doc_tokens),
            progress=progress_enabled(),
        )
        if faithfulness:
            from eval.faithfulness import check_faithfulness

            reports = check_faithfulness(generator, reports, k=k, seed=seed)
    pick = (sentence - 1) if sentence is not None else None
    if html_file or png_file:
        from eval.heatmap import write_html, write_png

        index = pick if pick is not None else 0
        if html_file:
            write_html(reports[0], html_file, index)
            click.echo(f"wrote {html_file}", err=True)
        if png_file:
            write_png(reports[0], png_file, index)
            click.echo(f"wrote {png_file}", err=True)
    if as_json:
        for rep in reports:
            click.echo(json.dumps(rep.to_dict(), ensure_ascii=False, indent=None if len(reports) > 1 else 2))
        return
    click.echo("\n\n".join(format_report(rep, pick) for rep in reports))


def _read_input(
    answer_file: str | None, question: str | None, passages_file: str | None, answer_text: str | None
) -> list[Any]:
    from eval.saliency.context import answer_from_parts, passages_from_rows, read_answers
    from pipeline.errors import InputError
    from pipeline.io import read_records

    parts = (question, passages_file, answer_text)
    if answer_file and any(p is not None for p in parts):
        raise InputError("give either ANSWER_FILE or --question/--passages/--answer, not both")
    if answer_file:
        return read_answers(answer_file)
    if any(p is None for p in parts):
        raise InputError(
            "give an ANSWER_FILE (`citerag ask --json` output), "
            "or all of --question, --passages FILE.jsonl and --answer TEXT"
        )
    rows = read_records(passages_file, "text")  # type: ignore[arg-type]
    return [answer_from_parts(question, passages_from_rows(rows, where=str(passages_file)), answer_text)]  # type: ignore[arg-type]


def format_report(report: Any, sentence: int | None = None) -> str:
    """Each answer sentence with its citations and every method's top sources, for people."""
    import numpy as np

    ctx = report.context
    lines = [f"Question: {ctx.question}"]
    for j, s in enumerate(ctx.sentences):
        if sentence is not None and j != sentence:
            continue
        cited = ", ".join(f"[{n}]" for n in s.citations) or "none"
        lines += ["", f"Sentence {j + 1}: {s.text}", f"  cited: {cited}"]
        for name, att in report.attributions.items():
            order = att.ranking(j)
            if not order:
                lines.append(f"  {name:<11} (no scorable tokens)")
                continue
            top = ", ".join(f"{att.sources[i].label} {att.scores[j, i]:+.3f}" for i in order[:3])
            lines.append(f"  {name:<11} {top}")
            f = report.faithfulness.get(name)
            if f is not None and not np.isnan(f.topk_drop[j]):
                lines.append(
                    f"  {'':<11} top-{f.k} removal drop {f.topk_drop[j]:.3f} vs random {f.random_drop[j]:.3f}; "
                    f"LDS {f.lds[j]:.3f}"
                )
    lines += ["", "Sources:"]
    for src in report.sources:
        snippet = src.text if len(src.text) <= 80 else src.text[:77] + "..."
        lines.append(f"  {src.label:<7} {snippet}")
    return "\n".join(lines)
