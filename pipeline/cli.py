"""The ``citerag`` command line. Heavy imports happen inside commands, so ``--help`` is fast."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from pipeline.errors import CiteragError

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("citerag")


def _handle_errors(fn: F) -> F:
    """Turn citerag errors into one line on stderr and the error's exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CiteragError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors; no progress bars.")
@click.version_option(package_name="citerag")
def cli(verbose: int, quiet: bool) -> None:
    """Answer questions with checked citations, revise text against evidence, score attribution."""
    level = logging.ERROR if quiet else (logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("citerag").setLevel(level)


@cli.group()
def models() -> None:
    """Manage the embedded default models."""


@models.command("prepare")
@click.option("--force", is_flag=True, help="Convert again even if the folder exists.")
@_handle_errors
def models_prepare(force: bool) -> None:
    """Convert the packaged SmolLM2 GGUF into a transformers folder in the cache (once)."""
    from pipeline.models import default_embedder_path, prepare_default_generator

    path = prepare_default_generator(force=force)
    click.echo(f"generator: {path}")
    click.echo(f"embedder:  {default_embedder_path()}")


def main() -> None:
    cli(prog_name="citerag")


if __name__ == "__main__":
    main()
