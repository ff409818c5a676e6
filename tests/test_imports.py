"""Heavy libraries stay lazy: importing the packages and `citerag --help` load none of them."""

from __future__ import annotations

import subprocess
import sys

HEAVY = (
    "torch", "vllm", "faiss", "transformers", "sentence_transformers", "bm25s", "langchain_core", "pypdf", "docx",
    "ray",
)  # fmt: skip


def _loaded_after(code: str) -> set[str]:
    probe = f"import sys\n{code}\nprint(' '.join(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_importing_packages_loads_no_heavy_library() -> None:
    assert _loaded_after("import pipeline, retrievers, verifiers, eval, pipeline.generators, app.cli") == set()


def test_cli_help_loads_no_heavy_library() -> None:
    code = (
        "from click.testing import CliRunner\nfrom app.cli import cli\n"
        "r = CliRunner().invoke(cli, ['--help'])\nassert r.exit_code == 0, r.output\n"
        "for c in ('ask', 'index', 'demo'):\n    assert CliRunner().invoke(cli, [c, '--help']).exit_code == 0\n"
    )
    assert _loaded_after(code) == set()
