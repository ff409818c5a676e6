"""Generator backends behind the ``Generator`` protocol.

* ``vllm``: :class:`~pipeline.generators.vllm_local.VLLMGenerator`, vLLM in this process
* ``openai``: :class:`~pipeline.generators.openai_http.OpenAIGenerator`, an OpenAI-compatible
  server (``citerag llm serve`` starts one: :mod:`pipeline.generators.server`), or
  :class:`~pipeline.generators.openai_pool.OpenAIPool` over several of them
* ``transformers``: :class:`~pipeline.generators.hf.TransformersGenerator`

Importing this package is cheap: each backend module (and torch, vllm, transformers, httpx)
is imported only when :func:`make_generator` builds that backend.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError

if TYPE_CHECKING:
    from pipeline.protocols import Generator

log = logging.getLogger(__name__)

#: Valid ``backend`` names for :func:`make_generator`.
BACKENDS: tuple[str, ...] = ("vllm", "openai", "transformers")


def make_generator(backend: str, model: str | None = None, *, llm_url: str | None = None, **opts: Any) -> Generator:
    """Build the generator ``backend`` for ``model`` (None: the packaged default model).

    ``llm_url`` is the server for the ``openai`` backend (where ``model`` is the served model
    id, discovered when None); several comma-separated URLs make an
    :class:`~pipeline.generators.openai_pool.OpenAIPool` over them. ``opts`` go to the backend's
    constructor.
    """
    name = (backend or "").strip().lower()
    if name not in BACKENDS:
        raise ConfigError(f"unknown generator backend {backend!r}; valid backends: {', '.join(BACKENDS)}")
    if llm_url and name != "openai":
        log.warning("--llm-url %s is ignored by the %s backend (it is used by --backend openai)", llm_url, name)
    if name == "openai":
        if not llm_url:
            raise ConfigError(
                "the openai backend needs a server URL: pass --llm-url http://HOST:PORT "
                "(start one with `citerag llm serve`)"
            )
        from pipeline.generators.openai_http import OpenAIGenerator
        from pipeline.models import packaged_generator

        # A packaged name (the default, gemma3-270m) is served under its folder path: let
        # the client discover the served id instead of sending the short name.
        served = None if not model or packaged_generator(model) is not None else model
        if "," in llm_url:
            from pipeline.generators.openai_pool import OpenAIPool, split_urls

            urls = split_urls(llm_url)
            if len(urls) > 1:
                return OpenAIPool(urls, served, **opts)
            llm_url = urls[0]
        return OpenAIGenerator(llm_url, served, **opts)

    from pipeline.models import resolve_generator

    path = resolve_generator(model)
    if name == "vllm":
        from pipeline.generators.vllm_local import VLLMGenerator

        return VLLMGenerator(path, **opts)
    from pipeline.generators.hf import TransformersGenerator

    return TransformersGenerator(path, **opts)


__all__ = ["BACKENDS", "make_generator"]
