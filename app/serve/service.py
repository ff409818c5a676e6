"""The objects behind the HTTP API: one index, one generator, one judge, shared by every request.

Requests run in worker threads (the pipeline is synchronous). What they share:

* the generator: thread-safe and *not* locked. ``--llm-url`` sends each request to the
  OpenAI-compatible server, which batches concurrent requests continuously; the embedded
  default is vLLM's async engine (:class:`~pipeline.generators.vllm_async.AsyncVLLMGenerator`),
  which does the same in this process;
* the retrievers, the post-hoc citer and the judge: short CPU work on objects that are not
  made for concurrent use (tokenizers, FAISS, torch modules), each call behind one lock.

Each request gets its own shallow copy of the pipeline with its ``k``, retriever and token
budget, so the answer is exactly what ``citerag ask`` prints for the same options.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from typing import Any, Literal

from pydantic import ConfigDict, Field

from app.serve.work import check_cancelled
from pipeline.config import Settings
from pipeline.errors import CiteragError, ConfigError, GeneratorUnavailableError, InputError

log = logging.getLogger(__name__)


class DocumentNotFoundError(InputError):
    """A document id that is not in the index."""

    http_status = 404


class ServeSettings(Settings):
    """Everything ``citerag serve`` is configured with: the pipeline :class:`Settings` that
    ``citerag ask`` uses (built by the same factory, so every generation option means the same)
    plus the server's own limits. ``api_key`` here is the server's auth key; the LLM server's
    key is ``llm_api_key``, as in ``Settings``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: ``vllm``: vLLM's async engine in this process; ``transformers``: one request at a time.
    backend: Literal["vllm", "transformers"] = "vllm"  # type: ignore[assignment]
    max_tokens_limit: int = Field(1024, ge=1)
    #: vLLM's automatic prefix caching in the in-process engine (repeated prompts skip prefill).
    prefix_caching: bool = True
    judge: str = "default"
    #: Answer "The documents do not answer this question." when nothing shown supports the draft.
    abstain: bool = True
    api_key: str | None = None
    max_body_bytes: int = Field(1 << 20, ge=1024)
    max_question_chars: int = Field(2000, ge=1)
    max_text_chars: int = Field(20000, ge=1)
    request_timeout: float = Field(300.0, gt=0)
    threads: int = Field(128, ge=1)
    #: Judge pairs one ``POST /v1/eval`` may need (an upper bound counted before judging); 413 over.
    max_eval_pairs: int = Field(2000, ge=1)
    #: The address the server binds (the Host-header policy depends on it).
    host: str = "127.0.0.1"
    #: Host headers answered (any port); None: the default policy of :mod:`app.serve.guards`.
    allowed_hosts: tuple[str, ...] | None = None
    #: On SIGTERM, seconds the requests in flight get to finish before they are cancelled.
    grace_seconds: float = Field(30.0, ge=0)


class _Around:
    """Calls to the wrapped object's methods ``names`` run inside ``around(label)`` (a context
    manager; ``label`` names the call); other attributes pass through."""

    def __init__(self, inner: Any, names: Sequence[str], around: Callable[[str], AbstractContextManager[Any]]) -> None:
        self._inner, self._names, self._around = inner, frozenset(names), around

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        value = getattr(self._inner, name)
        if name in self._names and callable(value):

            def wrapped(*args: Any, **kwargs: Any) -> Any:
                with self._around(f"{type(self._inner).__name__}.{name}"):
                    return value(*args, **kwargs)

            return wrapped
        return value


def _locked(inner: Any, lock: threading.RLock, names: Sequence[str]) -> Any:
    """Calls to ``names`` hold ``lock``."""
    return _Around(inner, names, lambda _label: lock)


@contextmanager
def _cancel_point(cancel: threading.Event, label: str) -> Iterator[None]:
    check_cancelled(cancel, label)
    yield


def _checked(obj: Any, cancel: threading.Event | None, names: Sequence[str]) -> Any:
    """Calls to ``names`` first check the request's cancel token: wrapped around a request's
    retriever, generator, post-hoc citer and judge, it makes every stage boundary and every
    batch sent to a model a point where cancelled work stops."""
    if obj is None or cancel is None:
        return obj
    return _Around(obj, names, lambda label: _cancel_point(cancel, label))


#: The methods that do model or index work, per component.
_GENERATOR = ("generate", "score", "stream")
_RETRIEVER = ("retrieve",)
_JUDGE = ("judge",)
_CITER = ("best",)


class CiteragService:
    """Loads the index and the generator once (:meth:`load`) and answers requests.

    ``generator`` (any ``Generator``) replaces the one the settings describe; ``judge``
    likewise. Neither is closed by :meth:`close` when passed in.
    """

    def __init__(self, settings: ServeSettings, *, generator: Any = None, judge: Any = None) -> None:
        self.settings = settings
        self._given_generator = generator
        self.generator: Any = generator
        self._judge = judge
        self.index: Any = None
        self.pipeline: Any = None
        self.error: CiteragError | None = None
        self.loaded = threading.Event()
        self._cpu = threading.RLock()
        self._build = threading.Lock()
        self._retrievers: dict[str, Any] = {}
        self.load_seconds: float | None = None

    # -- loading --------------------------------------------------------------------------
    @property
    def backend_name(self) -> str:
        if self._given_generator is not None:
            return type(self._given_generator).__name__
        return "openai" if self.settings.llm_url else self.settings.backend

    def load(self) -> None:
        """Open the index, load the embedder, start (or connect to) the generator. Idempotent;
        a failure is kept in ``error`` (and raised)."""
        if self.loaded.is_set():
            return
        t0 = time.perf_counter()
        try:
            self._load()
        except CiteragError as exc:
            self.error = exc
            raise
        except Exception as exc:  # noqa: BLE001 - reported by /readyz and every request
            self.error = GeneratorUnavailableError(f"citerag serve failed to start: {exc.__class__.__name__}: {exc}")
            raise self.error from exc
        self.error = None
        self.load_seconds = time.perf_counter() - t0
        self.loaded.set()
        log.info("citerag serve loaded in %.1f s", self.load_seconds)

    def _load(self) -> None:
        from app.factory import build_pipeline, check_settings
        from retrievers.index import load_index

        s = self.settings
        check_settings(s)
        index = load_index(s.index)
        # Every use of the embedder (retrieval, post-hoc citing) happens under the CPU lock.
        self._embedder = index.embedder() if (s.retriever != "bm25" or s.post_hoc) else None
        self.index = index
        retriever = self.retriever(s.retriever)
        if self.generator is None:
            self.generator = self._start_generator()
        pipe = build_pipeline(s, self.generator, index=index, retriever=retriever)
        if pipe.post_hoc is not None:
            pipe = replace(pipe, post_hoc=_locked(pipe.post_hoc, self._cpu, ["best"]))
        self.pipeline = pipe

    def _start_generator(self) -> Any:
        from app.factory import build_generator

        s = self.settings
        gen = build_generator(s, concurrent=True, timeout=s.request_timeout, prefix_caching=s.prefix_caching)
        if not s.llm_url and s.backend == "transformers":
            # transformers' generate is not made for concurrent calls: one request at a time.
            return _locked(gen, threading.RLock(), ["generate", "score"])
        return gen

    def retriever(self, kind: str) -> Any:
        """The (locked) retriever of ``kind``, built on first use."""
        with self._build:
            r = self._retrievers.get(kind)
            if r is None:
                if self.index is None:
                    raise self._not_ready()
                with self._cpu:
                    base = self.index.retriever(
                        kind, reranker=self.settings.reranker, rerank_depth=self.settings.rerank_depth
                    )
                r = self._retrievers[kind] = _locked(base, self._cpu, ["retrieve"])
            return r

    def judge(self) -> Any:
        """The support judge (loaded on the first verify or revise request)."""
        with self._build:
            if self._judge is None:
                from verifiers.judges import load_judge

                judge = load_judge(self.settings.judge, generator=self.generator)
                self._judge = judge if self.settings.judge == "llm" else _locked(judge, self._cpu, ["judge"])
            return self._judge

    def checked_judge(self, cancel: threading.Event | None) -> Any:
        """The judge, checking ``cancel`` before each batch it is given."""
        return _checked(self.judge(), cancel, _JUDGE)

    def checked_generator(self, cancel: threading.Event | None) -> Any:
        """The generator, checking ``cancel`` before each call."""
        return _checked(self.generator, cancel, _GENERATOR)

    def close(self) -> None:
        """Stop the generator this service started, and release the index (its version may then be
        removed by the next `citerag index`; a local-mode Qdrant store is unlocked for others)."""
        index = self.index
        if index is not None:
            with self._cpu:  # no retrieval is running on it
                index.close()
        gen = self.generator
        if gen is not None and self._given_generator is None:
            inner = getattr(gen, "_inner", gen)
            close = getattr(inner, "close", None)
            if close is not None:
                close()
        self.generator = None if self._given_generator is None else self.generator

    # -- state ----------------------------------------------------------------------------
    def _not_ready(self) -> CiteragError:
        if self.error is not None:
            return self.error
        err = GeneratorUnavailableError(
            "citerag serve is still loading the index and the generator; retry in a few seconds (see /readyz)"
        )
        return err

    def require_ready(self) -> None:
        if not self.loaded.is_set():
            raise self._not_ready()

    def generator_health(self) -> bool:
        gen = self.generator
        if gen is None:
            return False
        health = getattr(getattr(gen, "_inner", gen), "health", None)
        return True if health is None else bool(health())

    def readiness(self) -> dict[str, Any]:
        """``/readyz``: index loaded and generator answering."""
        gen_info: dict[str, Any] = {"backend": self.backend_name}
        url = getattr(self.generator, "base_url", None) or self.settings.llm_url
        if url:
            gen_info["url"] = url
        index_info: dict[str, Any] = {"path": str(self.settings.index)}
        if self.index is not None:
            index_info["passages"] = self.index.passage_count
        if not self.loaded.is_set():
            msg = str(self.error) if self.error else "loading the index and the generator"
            return {"ready": False, "index": index_info, "generator": gen_info, "message": msg}
        ok = self.generator_health()
        gen_info["answering"] = ok
        states = getattr(getattr(self.generator, "_inner", self.generator), "server_states", None)
        if callable(states):  # several --llm-url servers: which are in rotation
            gen_info["servers"] = states()
        msg = "" if ok else f"the generator{' at ' + url if url else ''} is not answering"
        return {"ready": ok, "index": index_info, "generator": gen_info, "message": msg}

    # -- requests -------------------------------------------------------------------------
    def check_length(self, text: str, limit: int, what: str, option: str) -> None:
        if len(text) > limit:
            raise InputError(
                f"the {what} is {len(text)} characters long; this server accepts at most {limit} ({option}): shorten it"
            )

    def request_pipeline(self, req: Any, cancel: threading.Event | None = None) -> Any:
        """The shared pipeline with this request's k, retriever, token budget and post-hoc choice;
        with ``cancel``, its components check that token before each call."""
        self.require_ready()
        s = self.settings
        max_tokens = req.max_tokens or s.max_tokens
        if max_tokens > s.max_tokens_limit:
            raise InputError(
                f"max_tokens is {max_tokens}; this server allows at most {s.max_tokens_limit} (--max-tokens-limit)"
            )
        pipe = self.pipeline
        changes: dict[str, Any] = {}
        if req.k is not None and req.k != pipe.k:
            changes["k"] = req.k
        kind = req.retriever or s.retriever
        if kind != s.retriever:
            changes["retriever"] = self.retriever(kind)
        # Requests of the chat endpoint may also set a temperature (app.serve.openai_chat).
        temperature = getattr(req, "temperature", None)
        if temperature is None:
            temperature = pipe.params.temperature
        if max_tokens != pipe.params.max_tokens or temperature != pipe.params.temperature:
            changes["params"] = replace(pipe.params, max_tokens=max_tokens, temperature=temperature)
        if req.post_hoc is False and pipe.post_hoc is not None:
            changes["post_hoc"] = None
        elif req.post_hoc and pipe.post_hoc is None:
            from pipeline.citations import EmbeddingPostHocCiter

            if self._embedder is None:
                raise ConfigError(
                    "post_hoc needs the index's embedder, which this server did not load "
                    "(--retriever bm25 --no-post-hoc)"
                )
            changes["post_hoc"] = _locked(
                EmbeddingPostHocCiter(self._embedder, s.post_hoc_min_similarity), self._cpu, ["best"]
            )
        query = getattr(req, "retrieval_query", None)
        if query:
            # A chat's follow-up retrieves with its earlier turns (app.serve.chat_query).
            from app.serve.chat_query import RetrievalQuery

            changes["retriever"] = RetrievalQuery(changes.get("retriever", pipe.retriever), req.question, query)
        if cancel is not None:
            changes["generator"] = _checked(pipe.generator, cancel, _GENERATOR)
            changes["retriever"] = _checked(changes.get("retriever", pipe.retriever), cancel, _RETRIEVER)
            changes["post_hoc"] = _checked(changes.get("post_hoc", pipe.post_hoc), cancel, _CITER)
        return replace(pipe, **changes) if changes else pipe

    def ask(
        self,
        req: Any,
        on_token: Callable[[str], None] | None = None,
        *,
        cancel: threading.Event | None = None,
        on_sentence: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """``citerag ask --json`` for one request (``on_token``: stream the answer text;
        ``on_sentence``: each sentence's event as it completes, then the sentences that
        verification or grounding changed, see :class:`pipeline.streaming.SentenceStream`).

        Once ``cancel`` is set the work stops at the next stage or model call
        (:class:`~app.serve.work.RequestCancelledError`), and a streamed generation at its
        next piece."""
        from pipeline.prompting import validate_question

        self.check_length(req.question, self.settings.max_question_chars, "question", "--max-question-chars")
        question = validate_question(req.question)
        check_cancelled(cancel, "retrieval")
        pipe = self.request_pipeline(req, cancel)
        sentences = None
        if on_token is not None:
            from pipeline.streaming import SentenceStream, ask_streaming

            sentences = SentenceStream(on_sentence) if on_sentence is not None else None
            answer = ask_streaming(pipe, question, on_token, cancel.is_set if cancel is not None else None, sentences)
        else:
            answer = pipe.ask(question)
        judge = None
        if req.verify:
            from verifiers.memo import MemoJudge
            from verifiers.rarr import build_reviser
            from verifiers.verify import verify_answers

            check_cancelled(cancel, "verification")
            judge = MemoJudge(self.checked_judge(cancel))  # grounding reuses this request's scores
            answer = verify_answers([answer], judge, build_reviser(pipe.retriever, pipe.generator, judge))[0]
        abstain = self.settings.abstain if req.abstain is None else req.abstain
        use_aware = pipe.citations == "use-aware"
        if abstain or req.quotes or use_aware:
            from verifiers.grounding import AbstainRule, ground_with_pipeline

            check_cancelled(cancel, "grounding")
            judge = judge or self.checked_judge(cancel)
            rule = AbstainRule() if abstain else None
            [answer] = ground_with_pipeline(pipe, [answer], judge, abstain=rule, quotes=req.quotes, use_aware=use_aware)
        if sentences is not None:
            sentences.settle(answer)
        return answer.to_dict()

    def revise(self, req: Any, *, cancel: threading.Event | None = None) -> dict[str, Any]:
        """``citerag revise --json`` for one request (stops at the next model call once ``cancel`` is set)."""
        from verifiers.rarr import RARRConfig, build_reviser

        self.check_length(req.text, self.settings.max_text_chars, "text", "--max-text-chars")
        if not req.text.strip():
            raise InputError('the text is empty: send {"text": "..."} with the text to revise')
        self.require_ready()
        config = RARRConfig(
            k=req.k, evidence_count=req.evidence, select_by=req.select_by, threshold=req.threshold,
            min_preservation=req.min_preservation, policy=req.policy, questions=req.samples > 0,
        )  # fmt: skip
        retriever = _checked(self.retriever(req.retriever or self.settings.retriever), cancel, _RETRIEVER)
        check_cancelled(cancel, "revision")
        reviser = build_reviser(
            retriever,
            self.checked_generator(cancel),
            self.checked_judge(cancel),
            config,
            samples=max(req.samples, 1),
            llm_gate=req.llm_gate,
        )
        return reviser.revise_batch([req.text])[0].to_dict()

    def document(self, doc_id: str, start: int, end: int, context: int) -> dict[str, Any]:
        """A window of ``doc_id`` around ``[start, end)``, rebuilt from the index's passages."""
        self.require_ready()
        with self._cpu:  # a Qdrant index answers from the client retrieval also uses
            parts = self.index.document_passages(doc_id)
        if not parts:
            raise DocumentNotFoundError(f"no document {doc_id!r} in the index at {self.settings.index}")
        if not 0 <= start <= end:
            raise InputError(f"bad span [{start}, {end}): need 0 <= start <= end")
        lo, hi = max(0, start - context), end + context
        length = max(p.end for p in parts)
        hi = min(hi, length)
        buf = [" "] * max(0, hi - lo)
        for p in parts:
            if p.end <= lo or p.start >= hi:
                continue
            for i in range(max(p.start, lo), min(p.end, hi)):
                buf[i - lo] = p.text[i - p.start]
        out = {
            "doc_id": doc_id,
            "title": parts[0].title,
            "text": "".join(buf),
            "offset": lo,
            "start": start,
            "end": min(end, length),
        }
        first = next((p for p in parts if p.start <= start < p.end and p.page is not None), None)
        last = next((p for p in parts if p.start < end <= p.end and p.page is not None), first)
        if first is not None and last is not None:
            out["page"] = first.page_at(start)
            page_end = last.page_at(max(start, end - 1))
            if page_end != out["page"]:
                out["page_end"] = page_end
        return out
