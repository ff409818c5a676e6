"""``citerag serve`` (and ``python serve.py``): the HTTP API and the web page on uvicorn.

Imports only click at module level, so ``citerag --help`` stays fast; FastAPI, uvicorn and
the models load when the command runs.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import click

from app.cli_common import (
    RETRIEVERS,
    default,
    generation_options,
    generation_settings,
    llm_options,
    quiet_libraries,
    sample_index,
    validated,
)
from app.cli_errors import handle_errors

log = logging.getLogger(__name__)


def _generation_options(fn: Any) -> Any:
    for opt in reversed(generation_options()):
        fn = opt(fn)
    return fn


@click.command("serve")
@click.option(
    "--index",
    "index_dir",
    default=None,
    type=click.Path(path_type=str),
    help="Index built by `citerag index` (default: the bundled sample corpus, indexed on first use).",
)
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to bind; 0.0.0.0 exposes the server to the network."
)
@click.option("--port", type=int, default=8080, show_default=True)
@llm_options(
    api_key_alias=False,
    llm_url_help="OpenAI-compatible server that generates (e.g. `citerag llm serve`); "
    "default: vLLM's async engine in this process.",
    backend_help="In-process generator without --llm-url: vLLM's async engine (batches concurrent requests) "
    "or transformers (one at a time).",
)
@click.option(
    "--api-key",
    default=None,
    envvar="CITERAG_API_KEY",
    help="Require 'Authorization: Bearer KEY' on every endpoint but /healthz (env CITERAG_API_KEY). "
    "Not the LLM server's key (--llm-api-key).",
)
@click.option(
    "--retriever",
    type=click.Choice(RETRIEVERS),
    default=default("retriever"),
    show_default=True,
    help="Default retriever.",
)
@click.option(
    "-k",
    "--k",
    type=int,
    default=default("k"),
    show_default=True,
    help="Default number of passages shown to the generator.",
)
@click.option("--reranker", default=None, help="Cross-encoder name or path to rerank the retrieved passages.")
@click.option(
    "--max-tokens",
    type=int,
    default=default("max_tokens"),
    show_default=True,
    help="Default answer length limit in tokens.",
)
@click.option(
    "--max-tokens-limit", type=int, default=1024, show_default=True, help="Largest max_tokens a request may ask for."
)
@click.option(
    "--dtype",
    default=default("dtype"),
    show_default=True,
    help="In-process engine dtype (bfloat16 is faster, float32 matches scores).",
)
@click.option(
    "--no-prefix-caching",
    is_flag=True,
    help="In-process engine: turn vLLM's automatic prefix caching off (benchmarks of repeated prompts).",
)
@_generation_options
@click.option(
    "--judge",
    "judge_name",
    default="default",
    show_default=True,
    help="Support judge for verify and revise: a name or a path.",
)
@click.option(
    "--no-abstain",
    is_flag=True,
    help='Never replace an answer by "The documents do not answer this question." (requests may still ask for it).',
)
@click.option("--max-body-bytes", type=int, default=1 << 20, show_default=True, help="Larger request bodies get 413.")
@click.option("--max-question-chars", type=int, default=2000, show_default=True, help="Longer questions get 422.")
@click.option("--max-text-chars", type=int, default=20000, show_default=True, help="Longer texts to revise get 422.")
@click.option(
    "--request-timeout", type=float, default=300, show_default=True, help="Seconds one request may take (504 after)."
)
@click.option(
    "--threads",
    type=int,
    default=128,
    show_default=True,
    help="Requests worked on at once (each in a thread; a timed-out request keeps its thread until its work stops).",
)
@click.option(
    "--max-eval-pairs",
    type=int,
    default=2000,
    show_default=True,
    help="Judge pairs one POST /v1/eval may need (counted before judging); more get 413.",
)
@click.option(
    "--allowed-hosts",
    default=None,
    envvar="CITERAG_ALLOWED_HOSTS",
    help="Comma-separated host names the server answers to (any port; '*': any), besides localhost. "
    "Default without --api-key: localhost, 127.0.0.1, [::1] (and, bound to another address, that address, "
    "this machine's name and IP addresses); other Host headers get 400, against DNS rebinding.",
)
@click.option(
    "--grace-seconds",
    type=float,
    default=30,
    show_default=True,
    help="On SIGTERM (or Ctrl-C), time the requests in flight get to finish; new connections are refused.",
)
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="info",
    show_default=True,
    help="uvicorn's access and error log level.",
)
@handle_errors
def serve(
    index_dir: str | None,
    host: str,
    port: int,
    llm_url: str | None,
    llm_api_key: str | None,
    api_key: str | None,
    retriever: str,
    k: int,
    reranker: str | None,
    backend: str,
    model: str,
    max_tokens: int,
    max_tokens_limit: int,
    max_model_len: int,
    dtype: str,
    no_prefix_caching: bool,
    judge_name: str,
    no_abstain: bool,
    max_body_bytes: int,
    max_question_chars: int,
    max_text_chars: int,
    request_timeout: float,
    threads: int,
    max_eval_pairs: int,
    allowed_hosts: str | None,
    grace_seconds: float,
    log_level: str,
    **kw: Any,
) -> None:
    """Serve the HTTP API (POST /v1/ask, /v1/revise, /v1/eval, /v1/attribute; GET /healthz, /readyz)
    and the web page at /.

    The index is checked before the server starts; the generator loads in the background
    (GET /readyz answers 503 until it is ready). API docs: /docs and /openapi.json.
    """
    settings = build_settings(
        index=index_dir, retriever=retriever, k=k, reranker=reranker, backend=backend, model=model, llm_url=llm_url,
        llm_api_key=llm_api_key, max_tokens=max_tokens, max_tokens_limit=max_tokens_limit, max_model_len=max_model_len,
        dtype=dtype, prefix_caching=not no_prefix_caching, judge=judge_name, abstain=not no_abstain,
        api_key=api_key or None, max_body_bytes=max_body_bytes, max_question_chars=max_question_chars,
        max_text_chars=max_text_chars, request_timeout=request_timeout, threads=threads,
        max_eval_pairs=max_eval_pairs, host=host, grace_seconds=grace_seconds,
        allowed_hosts=None if allowed_hosts is None else tuple(h.strip() for h in allowed_hosts.split(",")),
        **generation_settings(kw),
    )  # fmt: skip
    run_server(settings, host=host, port=port, log_level=log_level)


def build_settings(index: str | None, **kw: Any) -> Any:
    """Validated :class:`~app.serve.service.ServeSettings`; the index must exist (checked now)."""
    from app.serve.service import ServeSettings
    from retrievers.index import read_manifest

    if index is None:
        index = str(sample_index())
    read_manifest(index)  # fail now, with the command to run, rather than after start-up
    return validated(ServeSettings, index=index, **kw)


def run_server(settings: Any, *, host: str = "127.0.0.1", port: int = 8080, log_level: str = "info") -> None:
    """Start uvicorn with the app over ``settings`` and serve until interrupted.

    SIGTERM (and Ctrl-C) drain the server: uvicorn closes the listening socket (new connections
    are refused) and waits for the requests in flight; a request that still arrives on an open
    connection gets 503 with ``Retry-After``. After ``settings.grace_seconds`` the work still
    running is cancelled (its threads stop at their next check) and its requests get 503; then
    the generator is closed. The command returns normally (exit 0): uvicorn re-raises the
    signal it caught once it is done, and the handler installed here takes it instead of the
    default one that would kill the process.
    """
    import asyncio
    import signal

    import uvicorn

    from app.serve.app import create_app
    from app.serve.guards import host_policy
    from app.serve.service import CiteragService
    from pipeline.generators.base import vllm_env

    vllm_env(settings.model)
    # vLLM logs every engine step's details at INFO; the server's own log level decides.
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "DEBUG" if log_level == "debug" else "WARNING")
    app = create_app(CiteragService(settings))
    shown = f"[{host}]" if ":" in host else host
    click.echo(
        f"citerag serve: http://{shown}:{port}/ (API docs at /docs); loading the index and the generator...", err=True
    )
    if host not in ("127.0.0.1", "localhost", "::1") and not settings.api_key:
        click.echo(f"warning: listening on {host} without --api-key: anyone who can reach it can use it", err=True)
    policy = host_policy(settings.allowed_hosts, settings.api_key, settings.host)
    if policy is not None:
        click.echo(f"citerag serve: answering Host headers {policy.describe()} (--allowed-hosts)", err=True)
    pool = app.state.pool

    class DrainingServer(uvicorn.Server):
        async def shutdown(self, sockets: Any = None) -> None:
            drain = asyncio.ensure_future(pool.drain(settings.grace_seconds))
            try:
                await super().shutdown(sockets)
            finally:
                drain.cancel()

    # uvicorn's own limit comes a little later, so requests past the grace get their 503 first.
    config = uvicorn.Config(
        app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=settings.grace_seconds + 3
    )
    # uvicorn re-raises SIGTERM after its graceful shutdown; a drained server has done its job.
    signal.signal(signal.SIGTERM, lambda signum, frame: log.info("citerag serve drained after SIGTERM"))
    server = DrainingServer(config)
    server.run()
    if not server.started:
        raise SystemExit(3)


def main() -> None:
    """``python serve.py``: the same command, with citerag's logging set up as the CLI does."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    quiet_libraries(logging.INFO)
    serve(prog_name="serve.py")
