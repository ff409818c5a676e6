"""Pieces shared by the generator backends: the tokenizer wrapper, vLLM's environment and
input validation. Importing this module is cheap (transformers is imported on first use)."""

from __future__ import annotations

import importlib.metadata
import logging
import os
from collections.abc import Callable, MutableMapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError, ContextBudgetError, InputError, ModelNotFoundError
from pipeline.types import GenerationParams

log = logging.getLogger(__name__)

#: Environment vLLM needs on a CPU-only machine (DESIGN.md). Set with ``setdefault`` so a
#: user's own values win.
VLLM_CPU_ENV: dict[str, str] = {
    "VLLM_TARGET_DEVICE": "cpu",
    # GiB of KV cache; vLLM's CPU default takes a large share of the machine's memory.
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    # Run the engine core in the calling process. Measured here (2 cores, vllm-cpu 0.32):
    # in-process SmolLM2 starts in ~8 s instead of ~19 s and decodes ~1.5x faster (the
    # multiprocess worker is pinned to one core, the other reserved); the server is healthy
    # in ~15 s instead of ~21 s. Scripts then need no ``__main__`` guard either.
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
}


def _is_vllm_cpu_build() -> bool:
    try:
        importlib.metadata.distribution("vllm-cpu")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def vllm_env(model: str | None = None, *, environ: MutableMapping[str, str] | None = None) -> MutableMapping[str, str]:
    """Set vLLM's environment defaults in ``environ`` (``os.environ``) and return it.

    Call before ``import vllm``: vLLM reads several of these at import time (its log stream,
    sent to stderr here). The CPU values are applied when the installed build is ``vllm-cpu``.
    ``HF_HUB_OFFLINE=1`` is set when ``model`` is a local folder, so no hub lookup is attempted
    (there is no hub here); hub ids are left to the user's own configuration.
    """
    env = os.environ if environ is None else environ
    if _is_vllm_cpu_build():
        for key, value in VLLM_CPU_ENV.items():
            env.setdefault(key, value)
    else:
        env.setdefault("VLLM_NO_USAGE_STATS", "1")
        env.setdefault("DO_NOT_TRACK", "1")
    # vLLM logs to stdout by default; stdout belongs to the CLI's answers (``--json``).
    env.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    if model is not None and Path(model).expanduser().is_dir():
        env.setdefault("HF_HUB_OFFLINE", "1")
    return env


class HFTokenizer:
    """The ``Tokenizer`` protocol over a transformers tokenizer.

    ``encode`` adds no special tokens; ``encode_prompt`` adds them the way the model expects
    at the start of a prompt (BOS), unless the text already starts with the BOS string (a
    chat-formatted prompt). Every backend tokenizes prompts with ``encode_prompt`` so that
    in-process vLLM, the HTTP server and transformers see the same token ids.
    """

    def __init__(self, hf_tokenizer: Any) -> None:
        self.hf = hf_tokenizer

    @classmethod
    def from_pretrained(cls, name_or_path: str) -> HFTokenizer:
        """Load with ``AutoTokenizer``; ``ModelNotFoundError`` when it cannot be found."""
        from transformers import AutoTokenizer

        try:
            return cls(AutoTokenizer.from_pretrained(name_or_path))
        except (OSError, ValueError) as exc:
            raise ModelNotFoundError(
                f"cannot load a tokenizer from {name_or_path!r} ({exc.__class__.__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}); pass a local model folder "
                "or a hub id that is available offline"
            ) from exc

    @property
    def eos_token_id(self) -> int | None:
        return self.hf.eos_token_id

    @property
    def bos_token_id(self) -> int | None:
        return self.hf.bos_token_id

    def encode(self, text: str) -> list[int]:
        return list(self.hf.encode(text, add_special_tokens=False))

    def encode_prompt(self, text: str) -> list[int]:
        bos = self.hf.bos_token
        add = not (bos and text.startswith(bos))
        return list(self.hf(text, add_special_tokens=add)["input_ids"])

    def decode(self, ids: Sequence[int]) -> str:
        # Special tokens are kept so that decode(encode(s)) == s for chat-formatted text.
        return str(self.hf.decode(list(ids), skip_special_tokens=False))

    def apply_chat_template(self, messages: list[dict[str, str]]) -> str | None:
        if not getattr(self.hf, "chat_template", None):
            return None
        return str(self.hf.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))

    def __len__(self) -> int:
        return len(self.hf)


def check_params(params: GenerationParams) -> None:
    """Reject decoding parameters no backend supports."""
    if params.n != 1:
        raise ConfigError(f"GenerationParams.n must be 1 (got {params.n}); call generate once per sample")
    if params.max_tokens < 1:
        raise ConfigError(f"GenerationParams.max_tokens must be at least 1 (got {params.max_tokens})")
    if params.temperature < 0:
        raise ConfigError(f"GenerationParams.temperature must be >= 0 (got {params.temperature})")
    if not 0 < params.top_p <= 1:
        raise ConfigError(f"GenerationParams.top_p must be in (0, 1] (got {params.top_p})")
    if isinstance(params.stop, str):
        raise ConfigError("GenerationParams.stop must be a tuple of strings, not a string")
    if params.regex is not None and (not isinstance(params.regex, str) or not params.regex or "\x00" in params.regex):
        raise ConfigError(
            "GenerationParams.regex must be a non-empty regular expression without NUL characters, or None"
        )


#: What to do when a backend cannot constrain decoding (``GenerationParams.regex``).
NO_STRUCTURED_OUTPUT_HINT = "constrained citations need a vLLM backend: use --backend vllm or --llm-url"


def reject_regex(params: GenerationParams, backend: str) -> None:
    """Raise :class:`ConfigError` when ``params`` asks a backend without structured outputs for a regex."""
    if params.regex is not None:
        raise ConfigError(
            f"the {backend} backend cannot constrain decoding to a regular expression; {NO_STRUCTURED_OUTPUT_HINT}"
        )


def check_prompts(prompts: Sequence[str]) -> list[str]:
    """The prompts as a list of strings (a bare string is an error, not a batch of chars)."""
    if isinstance(prompts, str):
        raise InputError("prompts must be a sequence of strings, not one string")
    out = list(prompts)
    for i, p in enumerate(out):
        if not isinstance(p, str):
            raise InputError(f"prompt {i} is {type(p).__name__}, expected str")
    return out


def check_score_inputs(prompts: Sequence[str], continuations: Sequence[str]) -> tuple[list[str], list[str]]:
    """Validated ``(prompts, continuations)`` of equal length."""
    ps = check_prompts(prompts)
    cs = check_prompts(continuations)
    if len(ps) != len(cs):
        raise InputError(f"score needs one continuation per prompt (got {len(ps)} prompts, {len(cs)} continuations)")
    return ps, cs


def score_ids(tokenizer: Any, prompt: str, continuation: str) -> tuple[list[int], list[int]]:
    """Token ids of ``prompt`` (with ``encode_prompt``) and ``continuation`` (plain ``encode``).

    The two are tokenized separately, so the continuation's tokens are the same whatever
    the prompt. An empty prompt is replaced by the BOS token when there is one (the first
    continuation token needs something to be conditioned on).
    """
    p = tokenizer.encode_prompt(prompt) if hasattr(tokenizer, "encode_prompt") else tokenizer.encode(prompt)
    c = tokenizer.encode(continuation)
    if not p:
        bos = getattr(tokenizer, "bos_token_id", None)
        if bos is None:
            raise InputError("score needs a non-empty prompt (this tokenizer has no BOS token to start from)")
        p = [int(bos)]
    return p, c


def score_sequences(
    tokenizer: Any, prompts: Sequence[str], continuations: Sequence[str], max_context: int
) -> tuple[list[tuple[int, list[int]]], list[int], list[list[int]]]:
    """What a ``prompt_logprobs`` backend sends for :meth:`Generator.score`: per pair the prompt
    length and the continuation's ids (``spans``), the indices with a non-empty continuation
    (``todo``) and their full id sequences (``seqs``, in ``todo`` order). Raises on pairs
    longer than ``max_context``."""
    ps, cs = check_score_inputs(prompts, continuations)
    spans, todo, seqs = [], [], []
    for i, (p, c) in enumerate(zip(ps, cs)):
        p_ids, c_ids = score_ids(tokenizer, p, c)
        fit_max_tokens(len(p_ids) + len(c_ids), 1, max_context, index=i)
        spans.append((len(p_ids), c_ids))
        if c_ids:
            todo.append(i)
            seqs.append(p_ids + c_ids)
    return spans, todo, seqs


def score_params(*, read_cache: bool, **extra: Any) -> Any:
    """vLLM ``SamplingParams`` of a :meth:`Generator.score` request: one greedy token, the log-prob
    of every prompt token (``prompt_logprobs=0``), no detokenizing.

    vLLM leaves ``prompt_logprobs`` requests out of its prefix cache unless told otherwise,
    because it computes no log-prob for a position whose hidden state came from the cache.
    ``read_cache`` tells it otherwise; :func:`continuation_logprobs` then keeps only results
    whose cache hit ended before the scored continuation.
    """
    from vllm import SamplingParams

    return SamplingParams(
        max_tokens=1,
        temperature=0.0,
        prompt_logprobs=0,
        detokenize=False,
        skip_reading_prefix_cache=not read_cache,
        **extra,
    )


def continuation_logprobs(out: Any, start: int, c_ids: Sequence[int], *, read_cache: bool) -> list[float] | None:
    """The log-probs of the continuation ``c_ids`` (prompt positions ``start``...) in vLLM's
    ``RequestOutput`` ``out``; None when the request read ``h >= start`` tokens from the prefix
    cache: positions 1..h have no log-prob then (the hidden states before them were not
    computed), so the continuation is intact only when ``h < start`` (score it again uncached)."""
    if read_cache:
        cached = getattr(out, "num_cached_tokens", None)
        if cached is None or cached >= start:
            return None
    plp = out.prompt_logprobs
    return [float(plp[start + j][tok].logprob) for j, tok in enumerate(c_ids)]


def score_through_cache(
    spans: list[tuple[int, list[int]]],
    todo: list[int],
    seqs: list[list[int]],
    run: Callable[[list[list[int]], bool], Sequence[Any]],
    *,
    read_cache: bool,
    stats: MutableMapping[str, int] | None = None,
) -> list[list[float]]:
    """The continuation log-probs of every pair (``score_sequences``' output), in input order.

    ``run(seqs, read_cache)`` sends one vLLM request per sequence and returns their outputs in
    order. Pairs whose prefix-cache hit covered a continuation token
    (:func:`continuation_logprobs` gives None) are sent again with the cache off, once.
    ``stats`` (optional) counts prompt and cached tokens of cached requests and the rescored pairs.
    """
    result: list[list[float]] = [[] for _ in spans]
    while todo:
        outs = run(seqs, read_cache)
        redo: list[int] = []
        for k, (i, seq, out) in enumerate(zip(todo, seqs, outs)):
            start, c_ids = spans[i]
            if read_cache and stats is not None:
                stats["prompt_tokens"] += len(seq)
                stats["cached_tokens"] += getattr(out, "num_cached_tokens", None) or 0
            lps = continuation_logprobs(out, start, c_ids, read_cache=read_cache)
            if lps is None:
                redo.append(k)
            else:
                result[i] = lps
        if redo:
            log.debug("%d of %d scoring requests hit the cache inside their continuation", len(redo), len(todo))
            if stats is not None:
                stats["rescored"] += len(redo)
        todo, seqs, read_cache = [todo[k] for k in redo], [seqs[k] for k in redo], False
    return result


def resolve_model(model: str) -> str:
    """A local model folder (``~`` expanded), or the hub id unchanged; a path-looking name
    with no folder behind it raises :class:`ModelNotFoundError`."""
    local = Path(model).expanduser()
    if local.exists():
        return str(local)
    if model.startswith((".", "/", "~")):
        raise ModelNotFoundError(f"no model folder at {model!r}: pass an existing folder or a hub id")
    return model


def vllm_sampling(params: GenerationParams, max_tokens: int, **extra: Any) -> Any:
    """vLLM ``SamplingParams`` for one generation under ``params`` (top-p only when sampling;
    ``params.regex`` as vLLM's structured outputs, compiled by its xgrammar backend)."""
    from vllm import SamplingParams

    if params.regex is not None:
        from vllm.sampling_params import StructuredOutputsParams

        extra["structured_outputs"] = StructuredOutputsParams(regex=params.regex)
    return SamplingParams(
        n=1,
        max_tokens=max_tokens,
        temperature=params.temperature,
        top_p=params.top_p if params.temperature > 0 else 1.0,
        stop=[s for s in params.stop if s] or None,
        seed=params.seed,
        **extra,
    )


def fit_max_tokens(prompt_len: int, max_tokens: int, max_context: int, *, index: int = 0) -> int:
    """``max_tokens`` clamped so prompt + generation fits the context window."""
    room = max_context - prompt_len
    if room < 1:
        raise ContextBudgetError(
            f"prompt {index} has {prompt_len} tokens, which leaves no room in the generator's "
            f"{max_context}-token context: retrieve fewer or shorter passages"
        )
    if max_tokens > room:
        log.debug("prompt %d: max_tokens %d clamped to %d to fit the context", index, max_tokens, room)
    return min(max_tokens, room)


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to the earliest stop string (excluded) and whether one was found."""
    cut = -1
    for s in stop:
        if not s:
            continue
        i = text.find(s)
        if i >= 0 and (cut < 0 or i < cut):
            cut = i
    return (text, False) if cut < 0 else (text[:cut], True)
