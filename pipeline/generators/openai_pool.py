"""A ``Generator`` over several OpenAI-compatible servers serving the same model (N vLLM replicas).

Why a pool and not Ray: a user who already runs N servers needs only a client that spreads
requests across them and survives one of them going away.

* **Spread**: every prompt (or scored pair) is its own request, sent to the server with the
  fewest requests outstanding at the moment it is sent (ties: round robin). A batch keeps
  ``per_server`` times the number of servers in flight, so a slow server, whose requests stay
  outstanding longer, is given fewer of them. The servers batch concurrent
  requests themselves (vLLM's continuous batching), so nothing is lost by sending prompts
  one by one. Results come back in input order.
* **Failover**: a server that cannot be reached, times out or answers 5xx
  (:class:`GeneratorUnavailableError` from its client) is taken out of rotation and the request
  is sent to another one. It is tried again after a back-off (``backoff`` seconds, doubled on
  every failure up to ``max_backoff``) and is back in rotation as soon as it answers. A request
  fails only after every server failed it; the error names every URL.
* **Same model**: on first use, ``/v1/models`` of every reachable server must name the same
  model; different models are refused with :class:`ConfigError`. Every request names that
  model, so a server that was down then and comes back with another model answers 404 and is
  kept out of rotation like a failing one.

With one URL the factory builds a plain :class:`OpenAIGenerator`, so nothing changes there.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from pipeline.errors import ConfigError, GeneratorUnavailableError, ModelNotFoundError
from pipeline.generators.base import check_params, check_prompts, check_score_inputs
from pipeline.generators.openai_http import OpenAIGenerator, RemoteTokenizer, normalize_base_url
from pipeline.protocols import Tokenizer
from pipeline.types import Generation, GenerationParams

log = logging.getLogger(__name__)

T = TypeVar("T")

#: What takes a server out of rotation: it cannot be reached, times out or fails (5xx), or it
#: no longer serves the pool's model (one that was down at start-up and came back with another).
_OUT_OF_ROTATION = (GeneratorUnavailableError, ModelNotFoundError)


def split_urls(llm_url: str | Sequence[str]) -> list[str]:
    """The server URLs in ``llm_url``: a comma-separated string or a sequence of them, normalized,
    in order; a URL listed twice is an error (it would get twice its share)."""
    parts = [llm_url] if isinstance(llm_url, str) else list(llm_url)
    urls = [normalize_base_url(u) for p in parts for u in p.split(",") if u.strip()]
    if not urls:
        raise ConfigError("the LLM server URL is empty: pass --llm-url http://HOST:PORT")
    dup = sorted({u for u in urls if urls.count(u) > 1})
    if dup:
        raise ConfigError(f"--llm-url lists {', '.join(dup)} more than once: give each server once")
    return urls


@dataclass(eq=False)
class _Server:
    """One server's client and its place in the rotation (guarded by the pool's lock)."""

    client: OpenAIGenerator
    outstanding: int = 0
    #: ``time.monotonic()`` before which the server is out of rotation; 0 when it is in.
    down_until: float = 0.0
    #: When it was last taken out: failures of requests sent before then are the same outage.
    down_since: float = 0.0
    backoff: float = 0.0
    last_error: str = ""

    @property
    def url(self) -> str:
        return self.client.base_url


class OpenAIPool:
    """A ``Generator`` over the OpenAI-compatible servers at ``urls`` (see the module docstring).

    ``model``, ``tokenizer`` and ``opts`` (``api_key``, ``timeout``, ``connect_timeout``) go to
    every server's :class:`OpenAIGenerator`. Thread-safe: concurrent callers share the counts of
    outstanding requests.
    """

    def __init__(
        self,
        urls: str | Sequence[str],
        model: str | None = None,
        *,
        per_server: int = 8,
        backoff: float = 5.0,
        max_backoff: float = 60.0,
        tokenizer: str | Tokenizer | None = None,
        **opts: Any,
    ) -> None:
        if per_server < 1:
            raise ConfigError(f"per_server must be at least 1 (got {per_server})")
        self.servers = [_Server(OpenAIGenerator(u, model, tokenizer=tokenizer, **opts)) for u in split_urls(urls)]
        self.per_server = per_server
        self.backoff, self.max_backoff = backoff, max_backoff
        self._lock = threading.Lock()
        self._connect_lock = threading.Lock()
        self._next = 0  # round-robin start among equally loaded servers
        self._model: str | None = None
        self._info: dict[str, Any] = {}
        self._tokenizer: Tokenizer | None = None

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    @property
    def base_url(self) -> str:
        """All URLs, comma-separated (what ``/readyz`` and logs show)."""
        return ",".join(self.urls)

    def server_states(self) -> list[dict[str, Any]]:
        """Each server's URL, whether it is in rotation, its outstanding requests and, while it
        is out, its last error and the seconds until it is tried again (``/readyz`` shows them)."""
        with self._lock:
            now = time.monotonic()
            states = []
            for s in self.servers:
                state: dict[str, Any] = {"url": s.url, "in_rotation": s.down_until <= now, "outstanding": s.outstanding}
                if s.down_until > now:
                    state.update(retry_in_s=round(s.down_until - now, 1), error=s.last_error)
                states.append(state)
            return states

    # -- rotation -------------------------------------------------------------------------
    def _acquire(self, tried: set[int], *, ignore_backoff: bool = False) -> _Server | None:
        """The least-loaded server in rotation not yet ``tried`` (counted as outstanding), or None."""
        with self._lock:
            now = time.monotonic()
            n = len(self.servers)
            order = [self.servers[(self._next + i) % n] for i in range(n)]
            cands = [s for s in order if id(s) not in tried and (ignore_backoff or s.down_until <= now)]
            if not cands:
                return None
            best = min(cands, key=lambda s: s.outstanding)  # first of the least loaded: round robin
            self._next = (self.servers.index(best) + 1) % n
            best.outstanding += 1
            return best

    def _release(
        self, server: _Server, sent: float, error: BaseException | None = None, *, failed: bool = False
    ) -> None:
        """One request ``sent`` at that time is done; ``failed`` takes its server out."""
        with self._lock:
            server.outstanding -= 1
            if failed:
                self._take_out(server, error, sent)
            elif server.backoff and sent >= server.down_since:
                log.info("LLM server %s answers again: back in rotation", server.url)
                server.backoff, server.down_until, server.last_error = 0.0, 0.0, ""

    def _take_out(self, server: _Server, error: BaseException | None, sent: float) -> None:
        """Out of rotation for the next back-off (called under the lock). Requests that were
        in flight when it was taken out fail too: they do not lengthen the back-off."""
        server.last_error = str(error)
        if sent < server.down_since:
            return
        server.down_since = time.monotonic()
        server.backoff = self.backoff if server.backoff == 0 else min(server.backoff * 2, self.max_backoff)
        server.down_until = server.down_since + server.backoff
        log.warning("LLM server %s taken out of rotation for %.0f s: %s", server.url, server.backoff, error)

    def _pick(self, tried: set[int]) -> _Server:
        """The next server for a request that ``tried`` those servers already (added to it).

        A request fails only once every server has failed it: when those in rotation have,
        the ones still in back-off are tried too (one may have come back).
        """
        server = self._acquire(tried) or self._acquire(tried, ignore_backoff=True)
        if server is None:
            raise self._all_down()
        tried.add(id(server))
        return server

    def _call(self, fn: Callable[[OpenAIGenerator], T]) -> T:
        """``fn`` on the least-loaded server; on another one while servers fail."""
        tried: set[int] = set()
        while True:
            server = self._pick(tried)
            sent = time.monotonic()
            try:
                out = fn(server.client)
            except _OUT_OF_ROTATION as exc:
                self._release(server, sent, exc, failed=True)
                continue
            except BaseException:
                self._release(server, sent)
                raise
            self._release(server, sent)
            return out

    def _all_down(self) -> GeneratorUnavailableError:
        lines = "; ".join(f"{s.url}: {s.last_error or 'unreachable'}" for s in self.servers)
        return GeneratorUnavailableError(
            f"none of the {len(self.servers)} LLM servers answered ({lines}); "
            "start them (`citerag llm serve`) or fix --llm-url"
        )

    def _map(self, fn: Callable[[OpenAIGenerator, int], T], n: int) -> list[T]:
        """``fn(client, i)`` for i in range(n), each on the server least loaded when it is sent."""
        if n == 1:
            return [self._call(lambda c: fn(c, 0))]
        with ThreadPoolExecutor(min(n, self.per_server * len(self.servers)), "citerag-llm-pool") as ex:
            futures = [ex.submit(self._call, lambda c, i=i: fn(c, i)) for i in range(n)]
            try:
                return [f.result() for f in futures]
            except BaseException:
                for f in futures:
                    f.cancel()
                raise

    # -- discovery ------------------------------------------------------------------------
    def connect(self) -> OpenAIPool:
        """Ask every server for its model now; refuse servers that serve different models."""
        with self._connect_lock:
            if self._model is not None:
                return self
            infos: dict[str, dict[str, Any]] = {}
            for s in self.servers:
                sent = time.monotonic()
                try:
                    infos[s.url] = s.client._discover()
                except GeneratorUnavailableError as exc:
                    with self._lock:
                        self._take_out(s, exc, sent)
            if not infos:
                raise self._all_down()
            ids = {url: str(info.get("id")) for url, info in infos.items()}
            if len(set(ids.values())) > 1:
                listed = ", ".join(f"{url} serves {mid!r}" for url, mid in ids.items())
                raise ConfigError(
                    f"the LLM servers given with --llm-url serve different models ({listed}): "
                    "every server of a pool must serve the same model"
                )
            first = next(s for s in self.servers if s.url in infos)
            lens = [int(i["max_model_len"]) for i in infos.values() if i.get("max_model_len") is not None]
            self._info = {"owned_by": {str(i.get("owned_by")) for i in infos.values()}, "max_context": min(lens)
                          if lens else first.client.max_context}  # fmt: skip
            tok = first.client.tokenizer
            if isinstance(tok, RemoteTokenizer):
                # No local tokenizer: each client keeps its own server's endpoints (a prompt is
                # tokenized where it is sent); the pool's own calls fail over like requests.
                self._tokenizer = RemoteTokenizer(self)  # type: ignore[arg-type] - it needs model and _post
            else:
                self._tokenizer = tok
                for s in self.servers:  # one local tokenizer for all: each client would load its own
                    s.client._tokenizer = tok
            self._model = next(iter(ids.values()))
            for s in self.servers:  # requests name the checked model, also on servers down until now
                s.client._model = self._model
            log.info("LLM pool of %d servers serving %s: %s", len(self.servers), self._model, self.base_url)
        return self

    @property
    def model(self) -> str:
        return self.connect()._model or ""

    @property
    def is_vllm(self) -> bool:
        return self.connect()._info["owned_by"] == {"vllm"}

    @property
    def supports_regex(self) -> bool:
        return self.is_vllm

    @property
    def max_context(self) -> int:
        return int(self.connect()._info["max_context"])

    @property
    def tokenizer(self) -> Tokenizer:
        self.connect()
        assert self._tokenizer is not None
        return self._tokenizer

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        """One POST on any server (what :class:`RemoteTokenizer` sends)."""
        return self._call(lambda c: c._post(path, body))

    def health(self) -> bool:
        """True when at least one server answers its health check; never raises."""
        return any(s.client.health() for s in self.servers)

    # -- Generator protocol -----------------------------------------------------------------
    def generate(self, prompts: Sequence[str], params: GenerationParams) -> list[Generation]:
        """One generation per prompt, in input order, each prompt a request of its own."""
        check_params(params)
        texts = check_prompts(prompts)
        if not texts:
            return []
        self.connect()
        return self._map(lambda c, i: c.generate([texts[i]], params)[0], len(texts))

    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[list[float]]:
        """Continuation log-probs (vLLM servers), one request per pair, in input order."""
        ps, cs = check_score_inputs(prompts, continuations)
        if not ps:
            return []
        self.connect()
        return self._map(lambda c, i: c.score([ps[i]], [cs[i]])[0], len(ps))

    def stream(self, prompt: str, params: GenerationParams) -> Iterator[Generation]:
        """Stream from the least-loaded server; a server that fails before its first piece is
        replaced by another (after that, the error is raised: the pieces are already out)."""
        self.connect()
        tried: set[int] = set()
        while True:
            server = self._pick(tried)
            sent, started = time.monotonic(), False
            try:
                for piece in server.client.stream(prompt, params):
                    started = True
                    yield piece
            except _OUT_OF_ROTATION as exc:
                self._release(server, sent, exc, failed=True)
                if started:
                    raise
                continue
            except BaseException:
                self._release(server, sent)
                raise
            self._release(server, sent)
            return

    def close(self) -> None:
        for s in self.servers:
            s.client.close()

    def __enter__(self) -> OpenAIPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
