"""What every ``citerag`` command shares: the generator options (declared once, with defaults
read from :class:`~pipeline.config.Settings` so the CLI and the server cannot drift apart),
the settings-error translation, the reference lines of printed answers, the sample index and
the log levels of chatty libraries.

Imports click, pydantic (through ``pipeline.config``) and the standard library only, so
``citerag --help`` stays fast.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from pipeline.config import Settings
from pipeline.constrained import CITATION_MODES

F = TypeVar("F", bound=Callable[..., Any])
M = TypeVar("M")

#: Loggers of libraries that log (or draw progress bars) on their own; bm25s sets DEBUG at import.
CHATTY_LIBRARIES = ("bm25s", "sentence_transformers", "faiss", "httpx")
#: Rows per Ray actor call: small enough that two workers share 200 questions evenly, large
#: enough for an engine to batch its prefills.
RAY_BATCH_SIZE = 16
#: The in-process generator backends a command can start (``openai`` is chosen by --llm-url).
BACKENDS = ("vllm", "transformers")
RETRIEVERS = ("hybrid", "dense", "bm25")


def default(field: str) -> Any:
    """The default of one :class:`Settings` field: the single source of the CLI's defaults."""
    return Settings.model_fields[field].default


def _deprecated_api_key(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and ctx.get_parameter_source(param.name or "") == click.core.ParameterSource.COMMANDLINE:
        click.echo("warning: --api-key is deprecated for the LLM server's key and will be removed in the next "
                   "release: use --llm-api-key (env CITERAG_LLM_API_KEY)", err=True)  # fmt: skip
        ctx.meta["citerag.deprecated_api_key"] = value
    return None


def _llm_api_key(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """An explicit --llm-api-key wins; else an explicit (deprecated) --api-key beats the env."""
    if ctx.get_parameter_source(param.name or "") != click.core.ParameterSource.COMMANDLINE:
        value = ctx.meta.get("citerag.deprecated_api_key", value)
    return value


def _llm_urls(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> str | None:
    """Repeated --llm-url and comma-separated lists as one comma-separated string (the form
    ``Settings.llm_url`` holds); None when none is given. One URL is passed on unchanged."""
    urls = [u.strip() for v in value for u in v.split(",") if u.strip()]
    return ",".join(urls) if urls else None


def llm_options(
    purpose: str = "",
    *,
    backend_help: str = "In-process generator (ignored with --llm-url).",
    model_help: str = "Generator: the embedded default, a local path or a hub id.",
    llm_url_help: str = "OpenAI-compatible server (e.g. `citerag llm serve`), instead of an in-process engine.",
    api_key_alias: bool = True,
) -> Callable[[F], F]:
    """--backend, --model, --llm-url, --llm-api-key and --max-model-len for a command that runs a
    generator; ``purpose`` (e.g. "Agreement: ") starts each help text. ``api_key_alias`` keeps the
    old ``--api-key`` as a deprecated spelling of --llm-api-key (not on ``serve``, where
    --api-key is the server's own key). The command receives ``llm_api_key``, never ``api_key``."""
    opts = [
        click.option("--backend", type=click.Choice(BACKENDS), default=default("backend"), show_default=True,
                     help=purpose + backend_help),
        click.option("--model", default=default("model"), show_default=True, help=purpose + model_help),
        click.option("--llm-url", multiple=True, envvar="CITERAG_LLM_URL", callback=_llm_urls,
                     help=purpose + llm_url_help + " Repeat it, or give a comma-separated list, for several "
                     "servers of the same model: requests go to the least busy one (env CITERAG_LLM_URL)."),
        click.option("--llm-api-key", default=None, envvar="CITERAG_LLM_API_KEY", callback=_llm_api_key,
                     help="Bearer token for --llm-url (env CITERAG_LLM_API_KEY)."),
        click.option("--max-model-len", type=int, default=default("max_model_len"), show_default=True,
                     help=purpose + "Context window of the in-process engine."),
    ]  # fmt: skip
    if api_key_alias:
        # Processed first (eager) so --llm-api-key's callback sees it whatever the order on the line.
        opts.insert(4, click.option("--api-key", default=None, expose_value=False, is_eager=True,
                                    callback=_deprecated_api_key, help="Deprecated: use --llm-api-key."))  # fmt: skip

    def decorate(fn: F) -> F:
        for opt in reversed(opts):
            fn = opt(fn)
        return fn

    return decorate


def ray_options(what: str) -> Callable[[F], F]:
    """--ray, --ray-workers and --ray-batch-size of a batch command (``what``: its input option)."""
    opts = [
        click.option("--ray", "ray_target", default=None, metavar="local|auto|ADDRESS",
                     help=f"Run {what} as a Ray Data job: local starts Ray on this machine, auto joins the "
                          "running cluster (RAY_ADDRESS or `ray start`), else the cluster's address. Every worker "
                          "must be able to read the index."),
        click.option("--ray-workers", type=click.IntRange(min=1), default=None,
                     help="--ray: actors, each with its own generator and judge (default: one per two cores)."),
        click.option("--ray-batch-size", type=click.IntRange(min=1), default=RAY_BATCH_SIZE, show_default=True,
                     help="--ray: rows per actor call."),
    ]  # fmt: skip

    def decorate(fn: F) -> F:
        for opt in reversed(opts):
            fn = opt(fn)
        return fn

    return decorate


def generation_options() -> list[Callable[[F], F]]:
    """How an answer is generated and cited, shared by ``ask`` and ``serve`` so the server
    answers exactly as ``ask`` does; :func:`generation_settings` turns them into Settings fields."""
    return [
        click.option("--no-post-hoc", is_flag=True,
                     help="Do not attach citations to uncited sentences after generation."),
        click.option("--citations", type=click.Choice(CITATION_MODES), default=default("citations"), show_default=True,
                     help="auto: constrained on vLLM backends (not with --iterative), else post-hoc; "
                          "post-hoc: uncited sentences get the best-matching passage; constrained: decoding forces "
                          "a citation [n] on every sentence (vLLM backends only); use-aware: re-cite each sentence "
                          "to the supportive passages it used (leave-one-out, k+1 scoring passes)."),
        click.option("--iterative", is_flag=True,
                     help="Re-retrieve during generation (In-Context RALM's iterative mode)."),
        click.option("--stride", type=int, default=default("stride"), show_default=True,
                     help="Iterative mode: tokens generated between retrievals."),
        click.option("--query-tokens", type=int, default=default("query_tokens"), show_default=True,
                     help="Iterative mode: last tokens used as the query."),
        click.option("--speculative", is_flag=True,
                     help="Iterative mode: guess each retrieval from the question's cache and check the guesses "
                          "in batches, rolling back a wrong one (RaLMSpec); same answers under greedy decoding."),
        click.option("--spec-stride", type=click.IntRange(1, 8), default=default("spec_stride"), show_default=True,
                     help="Speculative mode: rounds guessed per check (re-chosen from measured costs)."),
        click.option("--prefetch", type=click.IntRange(min=0), default=default("prefetch"), show_default=True,
                     help="Speculative mode: extra passages retrieved in the first round to fill the cache "
                          "(BM25 only: its top-k is the head of its top-(k+prefetch))."),
    ]  # fmt: skip


def generation_settings(kw: dict[str, Any]) -> dict[str, Any]:
    """The :class:`Settings` fields of :func:`generation_options`' values."""
    return {"post_hoc": not kw["no_post_hoc"], "citations": kw["citations"], "iterative": kw["iterative"],
            "stride": kw["stride"], "query_tokens": kw["query_tokens"], "speculative": kw["speculative"],
            "spec_stride": kw["spec_stride"], "prefetch": kw["prefetch"]}  # fmt: skip


def validated(schema: Callable[..., M], /, **fields: Any) -> M:
    """``schema(**fields)``; a pydantic validation error becomes a :class:`ConfigError` that
    names the option (``--max-doc-tokens: ...``), so it prints as one line with exit code 2."""
    from pydantic import ValidationError

    from pipeline.errors import ConfigError

    try:
        return schema(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"--{'-'.join(map(str, first['loc'])).replace('_', '-')}: {first['msg']}") from None


def reference_lines(
    n: int,
    title: str | None,
    doc_id: str,
    start: int,
    end: int,
    text: str,
    page: int | None = None,
    page_end: int | None = None,
) -> list[str]:
    """``[n] Title (doc, p. 2, characters a-b)`` (the page only for a PDF passage) and a quoted
    snippet of at most 200 characters."""
    from pipeline.types import page_label

    snippet = " ".join(text.split())
    snippet = snippet if len(snippet) <= 200 else snippet[:197] + "..."
    title_part = f"{title} " if title else ""
    pages = page_label(page, page_end)
    where = f"{doc_id}, {pages + ', ' if pages else ''}characters {start}-{end}"
    return [f"[{n}] {title_part}({where})", f'    "{snippet}"']


def sample_corpus() -> Path:
    """The small corpus shipped inside the ``pipeline`` package (``citerag demo``)."""
    import pipeline

    return Path(pipeline.__file__).resolve().parent / "sample_corpus"


def sample_index(target: Path | None = None, *, rebuild: bool = False, progress: bool = False) -> Path:
    """The sample corpus's index at ``target`` (default: the cache), built when missing or when
    ``rebuild`` is set (``citerag demo`` rebuilds; ``citerag serve`` reuses)."""
    from pipeline.models import cache_dir
    from retrievers.index import build_index, index_exists

    target = target if target is not None else cache_dir() / "sample-index"
    if rebuild or not index_exists(target):
        corpus = sample_corpus()
        click.echo(f"indexing the sample corpus ({corpus}) into {target}", err=True)
        build_index(str(corpus), str(target), progress=progress)
    return target


def quiet_libraries(level: int) -> None:
    """Libraries log and draw progress bars on their own; follow our level instead."""
    if level > logging.INFO:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        # vLLM repeats harmless CPU warnings (thread binding) on every step at WARNING.
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    for name in CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    # pypdf warns of each repair it makes to a damaged PDF (at -v they show); `citerag index`
    # lists the files it could not read, with the reason, itself.
    logging.getLogger("pypdf").setLevel(level if level <= logging.INFO else logging.ERROR)
