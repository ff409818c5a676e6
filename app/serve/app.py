"""The FastAPI application: routes, streaming, auth, limits, errors, the web page.

``create_app(service)`` builds it around a :class:`~app.serve.service.CiteragService`; the
service is loaded in a background thread when the app starts, so ``/healthz`` answers at
once and ``/readyz`` says 503 until the index and the generator are ready.

Errors: a :class:`~pipeline.errors.CiteragError` becomes its ``http_status`` (422 bad input,
503 generator or index unavailable) with ``{"error": {"type", "message", "status"}}``; a
request over ``--request-timeout`` gets 504. Model work runs in at most ``--threads`` worker
threads (:mod:`app.serve.work`): a request that times out or whose client leaves has its
work cancelled at the next stage, and keeps its thread slot until that work has stopped.
Host headers, the API key and body sizes are checked by the middleware of
:mod:`app.serve.guards`. The scoring endpoints (``/v1/eval``,
``/v1/attribute``) live in :mod:`app.serve.routes_eval` and are always mounted: a missing
dependency there fails the import loudly instead of hiding the routes. The OpenAI-compatible
routes live in :mod:`app.serve.openai_chat` (their streams are ``/v1/ask``'s, translated).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.serve import openai_chat, routes_eval
from app.serve.guards import (
    COOKIE,
    AuthMiddleware,
    BodyLimitMiddleware,
    HostCheckMiddleware,
    host_policy,
    key_matches,
    session_token,
)
from app.serve.schemas import (
    ERROR_RESPONSES,
    SSE_EVENT_SCHEMA,
    AskRequest,
    AskResponse,
    DocumentSpan,
    ErrorResponse,
    HealthResponse,
    InfoResponse,
    ReadyResponse,
    ReviseRequest,
    ReviseResponse,
)
from app.serve.service import CiteragService
from app.serve.work import RequestTimeout, Work, WorkPool, watch_disconnect
from pipeline import __version__
from pipeline.errors import CiteragError

log = logging.getLogger(__name__)

T = TypeVar("T")
WEB_DIR = Path(__file__).parent / "web"
_ERRORS = ERROR_RESPONSES


def error_json(
    status: int, message: str, type_: str = "Error", headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = {"error": {"type": type_, "message": message, "status": status, **extra}}
    headers = dict(headers or {})
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body, status_code=status, headers=headers)


def _citerag_error(exc: CiteragError) -> JSONResponse:
    retry = getattr(exc, "retry_after", None)
    headers = {"Retry-After": str(retry)} if retry is not None else None
    return error_json(exc.http_status, str(exc), type(exc).__name__, headers)


# -- the app ------------------------------------------------------------------------------


def create_app(service: CiteragService, *, load_in_background: bool = True) -> FastAPI:
    """The FastAPI app over ``service`` (loaded at start-up unless it already is)."""
    s = service.settings
    pool = WorkPool(s.threads)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if load_in_background and not service.loaded.is_set():
            threading.Thread(target=_load_quietly, args=(service,), name="citerag-load", daemon=True).start()
        try:
            yield
        finally:
            # Work uvicorn gave up on (past --grace-seconds) stops at its next check.
            if n := pool.cancel_all():
                log.warning("shutting down: cancelled %d request(s) still at work", n)
            await asyncio.get_running_loop().run_in_executor(None, service.close)

    app = FastAPI(
        title="citerag",
        version=__version__,
        summary="Answers with checked citations, RARR-style revision, over your own documents.",
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.pool = pool

    async def run(
        fn: Work[T],
        timeout: float | None = None,
        *,
        request: Request | None = None,
        cancel: threading.Event | None = None,
    ) -> T:
        """``fn(cancel)`` in a worker thread (at most ``--threads`` at once), bounded by the
        request timeout; the token is set when the timeout passes or ``request``'s client leaves."""
        watch = (lambda token: watch_disconnect(request.receive, token)) if request is not None else None
        return await pool.run(fn, timeout or s.request_timeout, cancel=cancel, watch=watch)

    # errors ----------------------------------------------------------------------------
    @app.exception_handler(CiteragError)
    async def _on_citerag(request: Request, exc: CiteragError) -> JSONResponse:
        return _citerag_error(exc)

    @app.exception_handler(RequestTimeout)
    async def _on_timeout(request: Request, exc: RequestTimeout) -> JSONResponse:
        return error_json(
            504,
            f"the request took longer than {s.request_timeout:g} s (--request-timeout); "
            "ask for fewer tokens or retry when the server is less busy",
            "RequestTimeout",
        )

    @app.exception_handler(RequestValidationError)
    async def _on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        parts = []
        for e in errors:
            loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
            parts.append(f"{loc}: {e.get('msg', 'invalid')}")
        details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in errors]
        return error_json(422, "invalid request: " + "; ".join(parts), "ValidationError", details=details)

    @app.exception_handler(StarletteHTTPException)
    async def _on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_json(exc.status_code, str(exc.detail), "HTTPException")

    # probes ----------------------------------------------------------------------------
    @app.get("/healthz", response_model=HealthResponse, tags=["probes"])
    async def healthz() -> dict[str, str]:
        """The process is up (no auth, no model work)."""
        return {"status": "ok"}

    @app.get("/readyz", response_model=ReadyResponse, responses={503: {"model": ReadyResponse}}, tags=["probes"])
    async def readyz() -> JSONResponse:
        """The index is loaded and the generator answers (503 otherwise, with a message)."""
        state = await run(lambda _: service.readiness(), timeout=30)
        return JSONResponse(state, status_code=200 if state["ready"] else 503)

    @app.get("/v1/info", response_model=InfoResponse, tags=["probes"])
    async def info() -> dict[str, Any]:
        """Routes, defaults and limits of this server (the web page reads it)."""
        endpoints = sorted({r.path for r in app.routes if getattr(r, "path", "").startswith("/v1/")})
        return {
            "version": __version__,
            "endpoints": endpoints,
            "retrievers": ["hybrid", "dense", "bm25"],
            "defaults": {
                "k": s.k,
                "retriever": s.retriever,
                "max_tokens": s.max_tokens,
                "post_hoc": s.post_hoc,
                "judge": s.judge,
            },
            "limits": {
                "max_body_bytes": s.max_body_bytes,
                "max_question_chars": s.max_question_chars,
                "max_text_chars": s.max_text_chars,
                "max_tokens_limit": s.max_tokens_limit,
                "request_timeout_s": s.request_timeout,
                "max_eval_pairs": s.max_eval_pairs,
            },  # fmt: skip
            "auth": bool(s.api_key),
        }

    # the API ---------------------------------------------------------------------------
    @app.post(
        "/v1/ask",
        response_model=AskResponse,
        tags=["api"],
        responses={
            **_ERRORS,
            200: {
                "content": {"text/event-stream": {"schema": SSE_EVENT_SCHEMA}},
                "description": "The answer (JSON), or with `stream` server-sent events",
            },
        },  # fmt: skip
    )
    async def ask(req: AskRequest, request: Request) -> Response:
        """Answer a question from the index with citations (``citerag ask --json``).

        With ``"stream": true`` the answer comes as server-sent events: ``token`` events
        (``{"text": ...}``) as the answer is generated; a ``sentence`` event as each sentence
        of the answer completes (once the next one starts, or the generation ends); then one
        ``final`` event holding the whole answer (sentences, citations and, with ``verify``,
        each sentence's support), or an ``error`` event.

        A ``sentence`` event is ``{"index", "text", "start", "end", "citations", "post_hoc"}``:
        the sentence exactly as ``final``'s ``sentences[index]`` has it (offsets into the
        answer text), except that each citation is an object ``{"n", "doc_id", "title",
        "shown", "quote", "start", "end"}`` naming a passage the generator was shown, with
        ``quote`` the passage's text (or, with ``quotes``, the judge's supporting quote) and
        ``start``/``end`` its span in the source document. Support is known only after the
        generation: with ``verify`` (or grounding: ``quotes``, abstention) the sentences are
        sent again with the same ``index`` before ``final``, now with ``support`` and
        ``revised``; a later event for an index replaces the earlier one, and
        ``{"index": i, "removed": true}`` drops a sentence the final answer no longer has
        (an abstention replaces the answer by one sentence). So the last event for each index
        is ``final``'s sentence.
        """
        if req.stream:
            return await _stream_ask(req, request)
        result = await run(lambda cancel: service.ask(req, cancel=cancel), request=request)
        return JSONResponse(result)

    async def _stream_ask(req: AskRequest, request: Request) -> Response:
        # Checks that need no model run first, so their errors are plain HTTP statuses.
        service.check_length(req.question, s.max_question_chars, "question", "--max-question-chars")
        from pipeline.prompting import validate_question

        validate_question(req.question)
        service.require_ready()
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[tuple[str, Any] | None] = asyncio.Queue()
        stop = threading.Event()  # the request's cancel token

        def on_token(text: str) -> None:
            loop.call_soon_threadsafe(events.put_nowait, ("token", {"text": text}))

        def on_sentence(event: dict[str, Any]) -> None:
            loop.call_soon_threadsafe(events.put_nowait, ("sentence", event))

        async def work() -> None:
            try:
                result = await run(
                    lambda token: service.ask(req, on_token, cancel=token, on_sentence=on_sentence), cancel=stop
                )
                events.put_nowait(("final", result))
            except CiteragError as exc:
                events.put_nowait(
                    ("error", {"type": type(exc).__name__, "message": str(exc), "status": exc.http_status})
                )
            except RequestTimeout:
                events.put_nowait(("error", {"type": "RequestTimeout", "status": 504,
                                             "message": f"the request took longer than {s.request_timeout:g} s "
                                                        "(--request-timeout)"}))  # fmt: skip
            except Exception as exc:  # noqa: BLE001 - reported to the client, logged here
                log.exception("streaming ask failed")
                events.put_nowait(("error", {"type": type(exc).__name__, "message": str(exc), "status": 500}))
            finally:
                events.put_nowait(None)

        task = asyncio.create_task(work())
        # Until the first event the client's leaving is watched here; then by the stream.
        watcher = asyncio.create_task(watch_disconnect(request.receive, stop))
        try:
            first = await events.get()
        finally:
            watcher.cancel()
        if first is not None and first[0] == "error":
            stop.set()
            await task
            err = first[1]
            return error_json(err["status"], err["message"], err["type"])

        async def body() -> AsyncIterator[bytes]:
            item = first
            try:
                while item is not None:
                    name, data = item
                    yield f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()
                    item = await events.get()
            finally:
                stop.set()  # client gone or done: stop generating
                if not task.done():
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(asyncio.shield(task), 0.1)

        return StreamingResponse(
            body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )

    @app.post("/v1/revise", response_model=ReviseResponse, tags=["api"], responses=_ERRORS)
    async def revise(req: ReviseRequest, request: Request) -> JSONResponse:
        """Check every claim of a text against the index and edit only what the evidence contradicts
        (``citerag revise --json``)."""
        return JSONResponse(await run(lambda cancel: service.revise(req, cancel=cancel), request=request))

    @app.get(
        "/v1/documents/{doc_id:path}",
        response_model=DocumentSpan,
        tags=["api"],
        responses={404: {"model": ErrorResponse}},
    )
    async def document(doc_id: str, start: int, end: int, context: int = 300) -> JSONResponse:
        """The text around a cited span ``[start, end)`` of a source document (``context``
        characters each side), rebuilt from the index."""
        context = max(0, min(context, 5000))
        return JSONResponse(await run(lambda _: service.document(doc_id, start, end, context), timeout=30))

    routes_eval.register(app, service, run)
    openai_chat.register(app, service, run, _stream_ask)  # /v1/chat/completions, /v1/models

    # the web page ----------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def index_page() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        key = (form.get("key") or [""])[0]
        if not s.api_key or not key_matches(key, s.api_key):
            return error_json(401, "wrong API key", "Unauthorized")
        resp = RedirectResponse("/", status_code=303)
        secure = request.url.scheme == "https"
        resp.set_cookie(COOKIE, session_token(s.api_key), httponly=True, samesite="strict", secure=secure)
        return resp

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")

    # Outermost last: the Host check first, then auth, then the body limit.
    app.add_middleware(BodyLimitMiddleware, limit=s.max_body_bytes)
    if s.api_key:
        app.add_middleware(AuthMiddleware, key=s.api_key)
    policy = host_policy(s.allowed_hosts, s.api_key, s.host)
    if policy is not None:
        app.add_middleware(HostCheckMiddleware, policy=policy)
    return app


def _load_quietly(service: CiteragService) -> None:
    try:
        service.load()
    except Exception:  # noqa: BLE001 - kept in service.error, shown by /readyz and requests
        log.error("citerag serve could not load: %s", service.error)
