"""The FastAPI application: routes, streaming, auth, limits, errors, the web page.

``create_app(service)`` builds it around a :class:`~app.serve.service.CiteragService`; the
service is loaded in a background thread when the app starts, so ``/healthz`` answers at
once and ``/readyz`` says 503 until the index and the generator are ready.

Errors: a :class:`~pipeline.errors.CiteragError` becomes its ``http_status`` (422 bad input,
503 generator or index unavailable) with ``{"error": {"type", "message", "status"}}``; a
request over ``--request-timeout`` gets 504. The scoring endpoints (``/v1/eval``,
``/v1/attribute``) live in :mod:`app.serve.routes_eval` and are always mounted: a missing
dependency there fails the import loudly instead of hiding the routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.serve import routes_eval
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
from pipeline import __version__
from pipeline.errors import CiteragError

log = logging.getLogger(__name__)

T = TypeVar("T")
WEB_DIR = Path(__file__).parent / "web"
COOKIE = "citerag_api_key"
_ERRORS = ERROR_RESPONSES


def error_json(status: int, message: str, type_: str = "Error", **extra: Any) -> JSONResponse:
    body = {"error": {"type": type_, "message": message, "status": status, **extra}}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


def _citerag_error(exc: CiteragError) -> JSONResponse:
    return error_json(exc.http_status, str(exc), type(exc).__name__)


class RequestTimeout(Exception):
    pass


# -- ASGI middleware ---------------------------------------------------------------------


async def _send_json(send: Callable[[dict[str, Any]], Awaitable[None]], status: int, message: str, type_: str) -> None:
    body = json.dumps({"error": {"type": type_, "message": message, "status": status}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """413 for request bodies over ``limit`` bytes (by Content-Length, or while reading)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        msg = f"the request body is larger than this server accepts ({self.limit} bytes, --max-body-bytes)"
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await _send_json(send, 413, msg, "PayloadTooLarge")
            return
        seen = 0

        async def limited() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise StarletteHTTPException(413, msg)
            return message

        await self.app(scope, limited, send)


class AuthMiddleware:
    """Bearer-token auth on every path but ``/healthz`` (and ``/login``, which checks the key).

    The key is accepted as ``Authorization: Bearer KEY`` or, for the web page, as the cookie
    that ``POST /login`` sets. Keys are compared in constant time.
    """

    OPEN = ("/healthz", "/login")

    def __init__(self, app: Any, key: str) -> None:
        self.app, self.key = app, key.encode()

    def ok(self, headers: dict[bytes, bytes]) -> bool:
        auth = headers.get(b"authorization", b"")
        if auth[:7].lower() == b"bearer " and hmac.compare_digest(auth[7:].strip(), self.key):
            return True
        for part in headers.get(b"cookie", b"").split(b";"):
            name, _, value = part.strip().partition(b"=")
            if name == COOKIE.encode() and hmac.compare_digest(value, self.key):
                return True
        return False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in self.OPEN or self.ok(dict(scope.get("headers") or [])):
            await self.app(scope, receive, send)
            return
        if scope["path"] == "/" and scope.get("method") == "GET":
            body = _LOGIN_PAGE.encode()
            await send({"type": "http.response.start", "status": 401, "headers": [
                (b"content-type", b"text/html; charset=utf-8"), (b"www-authenticate", b"Bearer"),
                (b"content-length", str(len(body)).encode())]})  # fmt: skip
            await send({"type": "http.response.body", "body": body})
            return
        await _send_json(send, 401, "this server needs an API key: send 'Authorization: Bearer KEY'", "Unauthorized")


_LOGIN_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>citerag: API key</title>
<link rel="stylesheet" href="data:,"></head><body style="font-family:sans-serif;max-width:30em;margin:4em auto">
<h1>citerag</h1><p>This server needs its API key.</p>
<form method="post" action="/login"><input type="password" name="key" placeholder="API key" autofocus>
<button type="submit">Enter</button></form></body></html>"""


# -- the app ------------------------------------------------------------------------------


def create_app(service: CiteragService, *, load_in_background: bool = True) -> FastAPI:
    """The FastAPI app over ``service`` (loaded at start-up unless it already is)."""
    s = service.settings
    limiter_box: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        import anyio

        limiter_box["limiter"] = anyio.CapacityLimiter(s.threads)
        if load_in_background and not service.loaded.is_set():
            threading.Thread(target=_load_quietly, args=(service,), name="citerag-load", daemon=True).start()
        try:
            yield
        finally:
            await asyncio.get_running_loop().run_in_executor(None, service.close)

    app = FastAPI(
        title="citerag",
        version=__version__,
        summary="Answers with checked citations, RARR-style revision, over your own documents.",
        lifespan=lifespan,
    )
    app.state.service = service

    async def run(fn: Callable[[], T], timeout: float | None = None) -> T:
        """``fn()`` in a worker thread, bounded by the request timeout."""
        import anyio.to_thread

        job = anyio.to_thread.run_sync(fn, limiter=limiter_box.get("limiter"))
        try:
            return await asyncio.wait_for(job, timeout or s.request_timeout)
        except TimeoutError:
            raise RequestTimeout() from None

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
        state = await run(service.readiness, timeout=30)
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
    async def ask(req: AskRequest) -> Response:
        """Answer a question from the index with citations (``citerag ask --json``).

        With ``"stream": true`` the answer comes as server-sent events: ``token`` events
        (``{"text": ...}``) as the answer is generated, then one ``final`` event holding the
        whole answer (sentences, citations and, with ``verify``, each sentence's support),
        or an ``error`` event.
        """
        if req.stream:
            return await _stream_ask(req)
        result = await run(lambda: service.ask(req))
        return JSONResponse(result)

    async def _stream_ask(req: AskRequest) -> Response:
        # Checks that need no model run first, so their errors are plain HTTP statuses.
        service.check_length(req.question, s.max_question_chars, "question", "--max-question-chars")
        from pipeline.prompting import validate_question

        validate_question(req.question)
        service.require_ready()
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[tuple[str, Any] | None] = asyncio.Queue()
        stop = threading.Event()
        deadline = time.monotonic() + s.request_timeout

        def on_token(text: str) -> None:
            loop.call_soon_threadsafe(events.put_nowait, ("token", {"text": text}))

        def cancelled() -> bool:
            return stop.is_set() or time.monotonic() > deadline

        async def work() -> None:
            try:
                result = await run(lambda: service.ask(req, on_token, cancelled))
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
        first = await events.get()
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
    async def revise(req: ReviseRequest) -> JSONResponse:
        """Check every claim of a text against the index and edit only what the evidence contradicts
        (``citerag revise --json``)."""
        return JSONResponse(await run(lambda: service.revise(req)))

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
        return JSONResponse(await run(lambda: service.document(doc_id, start, end, context), timeout=30))

    routes_eval.register(app, service, run)

    # the web page ----------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def index_page() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        key = (form.get("key") or [""])[0]
        if not s.api_key or not hmac.compare_digest(key.encode(), s.api_key.encode()):
            return error_json(401, "wrong API key", "Unauthorized")
        resp = RedirectResponse("/", status_code=303)
        resp.set_cookie(COOKIE, key, httponly=True, samesite="strict")
        return resp

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")

    # Outermost last: auth first, then the body limit.
    app.add_middleware(BodyLimitMiddleware, limit=s.max_body_bytes)
    if s.api_key:
        app.add_middleware(AuthMiddleware, key=s.api_key)
    return app


def _load_quietly(service: CiteragService) -> None:
    try:
        service.load()
    except Exception:  # noqa: BLE001 - kept in service.error, shown by /readyz and requests
        log.error("citerag serve could not load: %s", service.error)
