"""Generator over an OpenAI-compatible HTTP server (vLLM's ``api_server`` first of all).

Prompts are sent as token ids (``/v1/completions`` accepts a list of token-id lists), so the
server sees exactly the tokens the in-process backends would. ``score`` uses vLLM's
``prompt_logprobs`` extension. Each ``choices[i].prompt_logprobs`` in vLLM 0.32's answer is
a list with one entry per prompt token: ``null`` for the first, then
``{"<token id>": {"logprob": float, "rank": int, "decoded_token": str}}``; with
``prompt_logprobs=0`` the dict holds just the actual token (keys are strings).

Kept on httpx rather than the official ``openai`` client (3.57), by measurement
(bench/bench_openai_client.py, a local stub server, same bodies, vLLM's fields in
``extra_body``): importing ``openai`` took 2.19 s against 0.44 s for httpx (5.0x; paid by every
``citerag ask --llm-url`` run), and a 32-prompt scoring or generation request 1.22x and 1.30x
the time. It would not shrink this module much: about 110 of its lines are HTTP (status and
transport errors, SSE parsing, health), and counting what the openai client would still need
here (its errors mapped onto pipeline.errors, raw calls for vLLM's ``/health``, ``/tokenize``
and ``/detokenize``, which are not OpenAI endpoints) it would save about 50 of them (an
estimate by reading, not a rewrite); the rest is vLLM's side: token-id prompts,
``max_model_len``/``root`` discovery, ``prompt_logprobs``, ``return_token_ids``,
``structured_outputs``. It also always sends an API key (a placeholder when none is given) and
retries by default, where this client fails at once with a message that says what to do.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError, GeneratorUnavailableError, InputError, ModelNotFoundError
from pipeline.generators.base import (
    HFTokenizer,
    check_params,
    check_prompts,
    fit_max_tokens,
    score_sequences,
)
from pipeline.protocols import Tokenizer
from pipeline.types import Generation, GenerationParams

log = logging.getLogger(__name__)

_HINT = "start one with `citerag llm serve` or fix --llm-url"


def normalize_base_url(url: str) -> str:
    """``http://host:port`` from any of ``host:port``, ``http://host:port/``, ``.../v1``."""
    u = url.strip().rstrip("/")
    if not u:
        raise ConfigError("the LLM server URL is empty: pass --llm-url http://HOST:PORT")
    if "://" not in u:
        u = "http://" + u
    if u.endswith("/v1"):
        u = u[: -len("/v1")]
    return u


class RemoteTokenizer:
    """The ``Tokenizer`` protocol over vLLM's ``/tokenize`` and ``/detokenize`` endpoints.

    One HTTP request per call: a fallback for when the served model's tokenizer cannot be
    loaded locally.
    """

    def __init__(self, client: OpenAIGenerator) -> None:
        self._client = client
        self._prefix: list[int] | None = None

    def _tokenize(self, text: str, add_special_tokens: bool) -> list[int]:
        body = {"model": self._client.model, "prompt": text, "add_special_tokens": add_special_tokens}
        return [int(t) for t in self._client._post("/tokenize", body)["tokens"]]

    def encode(self, text: str) -> list[int]:
        return self._tokenize(text, False)

    def encode_prompt(self, text: str) -> list[int]:
        """Like :meth:`HFTokenizer.encode_prompt`: special prefix tokens unless already there."""
        if self._prefix is None:
            self._prefix = self._tokenize("", True)
        ids = self.encode(text)
        p = self._prefix
        if p and ids[: len(p)] != p:
            ids = p + ids
        return ids

    @property
    def bos_token_id(self) -> int | None:
        if self._prefix is None:
            self._prefix = self._tokenize("", True)
        return self._prefix[0] if self._prefix else None

    def decode(self, ids: Sequence[int]) -> str:
        body = {"model": self._client.model, "tokens": [int(i) for i in ids]}
        return str(self._client._post("/detokenize", body)["prompt"])

    def apply_chat_template(self, messages: list[dict[str, str]]) -> str | None:
        body = {"model": self._client.model, "messages": messages, "add_generation_prompt": True}
        try:
            ids = self._client._post("/tokenize", body)["tokens"]
        except InputError:
            # vLLM answers 400 when the model has no chat template.
            return None
        return self.decode(ids)


class OpenAIGenerator:
    """A ``Generator`` over an OpenAI-compatible server at ``base_url``.

    Nothing is sent until first use: the served model id (when ``model`` is None), the
    context window and the tokenizer are discovered from ``/v1/models`` then. ``tokenizer``
    may be a ``Tokenizer`` object, a local path or a hub id available offline; by default the
    served model's own path is tried, then the server's ``/tokenize`` endpoints.
    Unreachable servers raise :class:`GeneratorUnavailableError`.
    """

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = 120.0,
        tokenizer: str | Tokenizer | None = None,
        connect_timeout: float = 5.0,
    ) -> None:
        import httpx

        self.base_url = normalize_base_url(base_url)
        self._model = model
        self._tokenizer_spec = tokenizer
        self._tokenizer: Tokenizer | None = (
            tokenizer if tokenizer is not None and not isinstance(tokenizer, str) else None
        )
        self._max_context: int | None = None
        self._model_info: dict[str, Any] | None = None
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(connect_timeout, timeout)),
        )

    # -- HTTP ---------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        url = f"{self.base_url}{path}"
        with self._transport_errors(path):
            r = self._http.request(method, path, json=body)
        self._check_status(r, path)
        try:
            return r.json()
        except ValueError as exc:
            raise GeneratorUnavailableError(f"{url} answered something that is not JSON; {_HINT}") from exc

    @contextlib.contextmanager
    def _transport_errors(self, path: str) -> Iterator[None]:
        """Turn httpx's connection and timeout errors into :class:`GeneratorUnavailableError`."""
        import httpx

        try:
            yield
        except httpx.TimeoutException as exc:
            raise GeneratorUnavailableError(
                f"the LLM server at {self.base_url} did not answer {path} in time ({exc.__class__.__name__}); "
                f"check that it is running and not overloaded, or {_HINT}"
            ) from exc
        except httpx.TransportError as exc:
            raise GeneratorUnavailableError(
                f"cannot reach the LLM server at {self.base_url} ({exc.__class__.__name__}: {exc}); {_HINT}"
            ) from exc

    def _check_status(self, r: Any, path: str) -> None:
        """Raise the citerag error for an HTTP error status (the body must have been read)."""
        url = f"{self.base_url}{path}"
        if r.status_code >= 500:
            raise GeneratorUnavailableError(
                f"the LLM server at {self.base_url} failed on {path} (HTTP {r.status_code}: {_error_text(r)}); "
                f"check its log, or {_HINT}"
            )
        if r.status_code in (401, 403):
            raise ConfigError(
                f"the LLM server at {url} refused the request (HTTP {r.status_code}): check --llm-api-key"
            )
        if r.status_code == 404:
            msg = _error_text(r)
            if "model" in msg.lower():
                raise ModelNotFoundError(f"the LLM server at {self.base_url} does not serve that model: {msg}")
            raise GeneratorUnavailableError(
                f"{url} does not exist (HTTP 404): is {self.base_url} an OpenAI-compatible server? {_HINT}"
            )
        if r.status_code >= 400:
            raise InputError(
                f"the LLM server at {self.base_url} rejected {path} (HTTP {r.status_code}): {_error_text(r)}"
            )

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        return self._request("POST", path, body)

    def health(self) -> bool:
        """True when the server answers ``/health`` (or ``/v1/models``) with 200; never raises."""
        import httpx

        for path in ("/health", "/v1/models"):
            try:
                if self._http.get(path, timeout=5.0).status_code == 200:
                    return True
            except httpx.HTTPError:
                return False
        return False

    # -- discovery ----------------------------------------------------------------------
    def _discover(self) -> dict[str, Any]:
        if self._model_info is None:
            data = self._request("GET", "/v1/models").get("data") or []
            if not data:
                raise GeneratorUnavailableError(f"the LLM server at {self.base_url} serves no model; {_HINT}")
            if self._model is None:
                info = data[0]
                if len(data) > 1:
                    log.warning("%s serves %d models; using %s", self.base_url, len(data), info.get("id"))
            else:
                matches = [d for d in data if d.get("id") == self._model]
                if not matches:
                    ids = ", ".join(str(d.get("id")) for d in data)
                    raise ModelNotFoundError(
                        f"the LLM server at {self.base_url} does not serve {self._model!r}; it serves: {ids}"
                    )
                info = matches[0]
            self._model_info = info
        return self._model_info

    def connect(self) -> OpenAIGenerator:
        """Contact the server now (model id, context window); return self."""
        self._discover()
        return self

    @property
    def model(self) -> str:
        """The served model id requests are sent to."""
        return self._model or str(self._discover()["id"])

    @property
    def is_vllm(self) -> bool:
        return self._discover().get("owned_by") == "vllm"

    @property
    def supports_regex(self) -> bool:
        """Only a vLLM server decodes under ``structured_outputs`` (citations "auto" ->
        "constrained"); other OpenAI-compatible servers get post-hoc citations."""
        return self.is_vllm

    @property
    def max_context(self) -> int:  # type: ignore[override]
        if self._max_context is None:
            n = self._discover().get("max_model_len")
            if n is None:
                log.warning("%s does not report max_model_len; assuming 2048 tokens", self.base_url)
                n = 2048
            self._max_context = int(n)
        return self._max_context

    @property
    def tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:
            self._tokenizer = self._load_tokenizer()
        return self._tokenizer

    def _load_tokenizer(self) -> Tokenizer:
        spec = self._tokenizer_spec
        if isinstance(spec, str):
            return HFTokenizer.from_pretrained(spec)
        info = self._discover()
        for cand in (info.get("root"), info.get("id")):
            if cand and Path(str(cand)).expanduser().is_dir():
                try:
                    return HFTokenizer.from_pretrained(str(cand))
                except ModelNotFoundError:
                    log.debug("cannot load a local tokenizer from %s", cand, exc_info=True)
            elif cand:
                tok = _cached_hub_tokenizer(str(cand))
                if tok is not None:
                    return tok
        log.info("using the tokenizer endpoints of %s (the model's tokenizer is not available here)", self.base_url)
        return RemoteTokenizer(self)

    # -- Generator protocol -------------------------------------------------------------
    def _prompt_ids(self, text: str) -> list[int]:
        tok = self.tokenizer
        encode = getattr(tok, "encode_prompt", tok.encode)
        return list(encode(text))

    def generate(self, prompts: Sequence[str], params: GenerationParams) -> list[Generation]:
        """One generation per prompt, in input order; one request per distinct token budget."""
        check_params(params)
        texts = check_prompts(prompts)
        if not texts:
            return []
        ids = [self._prompt_ids(t) for t in texts]
        budgets = [fit_max_tokens(len(p), params.max_tokens, self.max_context, index=i) for i, p in enumerate(ids)]
        results: list[Generation | None] = [None] * len(texts)
        for budget in sorted(set(budgets)):
            idx = [i for i, b in enumerate(budgets) if b == budget]
            body = self._completion_body([ids[i] for i in idx], budget, params)
            choices = self._post("/v1/completions", body).get("choices") or []
            if len(choices) != len(idx):
                raise GeneratorUnavailableError(
                    f"the LLM server at {self.base_url} returned {len(choices)} completions for {len(idx)} prompts"
                )
            for ch in choices:
                i = idx[int(ch["index"])]
                results[i] = Generation(
                    text=ch.get("text") or "",
                    token_ids=tuple(int(t) for t in (ch.get("token_ids") or ())),
                    finish_reason=ch.get("finish_reason") or "",
                )
        return [g if g is not None else Generation("") for g in results]

    def _completion_body(self, ids: list[list[int]], budget: int, params: GenerationParams) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": ids,
            "max_tokens": budget,
            "temperature": params.temperature,
            "top_p": params.top_p if params.temperature > 0 else 1.0,
            "n": 1,
            "seed": params.seed,
        }
        stop = [s for s in params.stop if s]
        if stop:
            body["stop"] = stop
        if self.is_vllm:
            body["return_token_ids"] = True
        if params.regex is not None:
            if not self.is_vllm:
                raise ConfigError(
                    f"the LLM server at {self.base_url} is not a vLLM server, so it cannot be asked for "
                    "structured outputs; constrained citations need a vLLM backend: use --backend vllm or "
                    "point --llm-url at a vLLM server (`citerag llm serve`)"
                )
            # vLLM's extension field (vLLM >= 0.11; older servers called it guided_regex).
            body["structured_outputs"] = {"regex": params.regex}
        return body

    def stream(self, prompt: str, params: GenerationParams) -> Iterator[Generation]:
        """Generate for one prompt with ``"stream": true``; yield each delta as it arrives.

        Every chunk is a :class:`Generation` holding only the new text (and token ids when
        the server reports them); the last one carries the ``finish_reason``. Closing the
        iterator early closes the connection, which makes vLLM abort the request.
        """
        check_params(params)
        [text] = check_prompts([prompt])
        ids = self._prompt_ids(text)
        budget = fit_max_tokens(len(ids), params.max_tokens, self.max_context)
        body = {**self._completion_body([ids], budget, params), "stream": True}
        path = "/v1/completions"
        with self._transport_errors(path):
            with self._http.stream("POST", path, json=body) as r:
                if r.status_code >= 400:
                    r.read()
                    self._check_status(r, path)
                finished = False
                for line in r.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[len("data:") :].strip()
                    if data == "[DONE]":
                        return
                    try:
                        event = json.loads(data)
                    except ValueError as exc:
                        raise GeneratorUnavailableError(
                            f"the LLM server at {self.base_url} streamed something that is not JSON: {data[:200]!r}"
                        ) from exc
                    if "error" in event and not event.get("choices"):
                        err = event["error"]
                        msg = err.get("message", err) if isinstance(err, dict) else err
                        raise GeneratorUnavailableError(
                            f"the LLM server at {self.base_url} failed while streaming: {msg}"
                        )
                    for ch in event.get("choices") or ():
                        finished = finished or bool(ch.get("finish_reason"))
                        yield Generation(
                            text=ch.get("text") or "",
                            token_ids=tuple(int(t) for t in (ch.get("token_ids") or ())),
                            finish_reason=ch.get("finish_reason") or "",
                        )
                if not finished:
                    # A stream that ends with neither a finish reason nor [DONE] was cut (the
                    # server died or a proxy closed it): passing it off as a whole answer would
                    # silently truncate it.
                    raise GeneratorUnavailableError(
                        f"the LLM server at {self.base_url} closed the stream before the answer ended "
                        "(no finish_reason, no [DONE]): is it still running?"
                    )

    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[list[float]]:
        """Log-prob of each continuation token, from vLLM's ``prompt_logprobs`` in one request.

        A vLLM server (0.32) prefills every such prompt from scratch: its completions API has no
        field that lets a ``prompt_logprobs`` request read the prefix cache (``vllm_xargs`` only
        reach ``SamplingParams.extra_args``), so this generator does not declare
        ``reuses_prompt_prefixes``; the in-process engines do."""
        spans, todo, seqs = score_sequences(self.tokenizer, prompts, continuations, self.max_context)
        result: list[list[float]] = [[] for _ in spans]
        if not todo:
            return result
        body = {"model": self.model, "prompt": seqs, "max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 0}
        choices = self._post("/v1/completions", body).get("choices") or []
        if len(choices) != len(todo):
            raise GeneratorUnavailableError(
                f"the LLM server at {self.base_url} returned {len(choices)} results for {len(todo)} prompts"
            )
        for ch in choices:
            i = todo[int(ch["index"])]
            plp = ch.get("prompt_logprobs")
            if plp is None:
                raise GeneratorUnavailableError(
                    f"the LLM server at {self.base_url} returned no prompt_logprobs: score needs a vLLM server "
                    "(the prompt_logprobs extension)"
                )
            start, c_ids = spans[i]
            result[i] = [float(plp[start + j][str(t)]["logprob"]) for j, t in enumerate(c_ids)]
        return result

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OpenAIGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _error_text(r: Any) -> str:
    try:
        data = r.json()
    except ValueError:
        return (r.text or "").strip()[:300]
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            return str(err.get("message") or err)[:300]
        return str(err)[:300]
    return str(data)[:300]


def _cached_hub_tokenizer(name: str) -> HFTokenizer | None:
    """A hub tokenizer from the local HF cache only (never a download), or None."""
    try:
        from transformers import AutoTokenizer

        return HFTokenizer(AutoTokenizer.from_pretrained(name, local_files_only=True))
    except Exception:  # noqa: BLE001 - any failure means "not available here"
        return None
