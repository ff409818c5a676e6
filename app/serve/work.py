"""Request work in bounded threads, with a cancel token that reaches the work.

Model work (retrieval, generation, judging) blocks, so every request runs it in a worker
thread. :class:`WorkPool` bounds those threads to ``--threads`` and holds a request's slot
until its thread has really ended, not until its HTTP answer was sent: a request that got its
504 (``--request-timeout``), whose client went away, or that the server's shutdown gave up on
keeps counting against ``--threads`` until the work stops. The work stops at its next check of
the request's cancel token (a :class:`threading.Event`), which :class:`~app.serve.service.CiteragService`
checks between stages (retrieve, generate, cite, verify, ground) and before every batch it
sends to a model; a stage already running finishes first (a generation stream stops at its
next piece).

Threads are daemons: a generation stuck on a dead socket cannot keep the process from exiting
once the server has drained.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pipeline.errors import CiteragError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The work of one request: called in a worker thread with the request's cancel token.
Work = Callable[[threading.Event], T]


class RequestTimeout(Exception):
    """The request passed ``--request-timeout`` (answered 504)."""


class RequestCancelledError(CiteragError):
    """The request's work was stopped at a check of its cancel token.

    Its client has its answer already (504) or is gone; the status is what a request still
    waiting gets when the server shuts down before its work is done."""

    http_status = 503
    #: Seconds after which a client may send it again (the ``Retry-After`` header).
    retry_after = 5


class ServerDrainingError(RequestCancelledError):
    """The server is shutting down (SIGTERM): no new work, and work past the grace period stops."""


def check_cancelled(cancel: threading.Event | None, stage: str) -> None:
    """Raise :class:`RequestCancelledError` when ``cancel`` is set (``stage``: what comes next)."""
    if cancel is not None and cancel.is_set():
        raise RequestCancelledError(
            f"the request was cancelled before {stage} (its client left, it passed --request-timeout, "
            "or the server is shutting down); send it again"
        )


class WorkPool:
    """Runs request work in daemon threads, at most ``size`` at once.

    A slot is taken before the thread starts (the wait counts against the request's timeout)
    and given back when the thread ends. ``running`` and ``peak`` count threads (tests and
    benchmarks read them).
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1 (got {size})")
        self.size = size
        self._slots = asyncio.Semaphore(size)
        self._tokens: set[threading.Event] = set()
        self._gave_up = asyncio.Event()
        #: True from the start of a graceful shutdown: new work is refused (503).
        self.draining = False
        self.running = 0
        self.peak = 0

    async def run(
        self,
        work: Work[T],
        timeout: float,
        *,
        cancel: threading.Event | None = None,
        watch: Callable[[threading.Event], Awaitable[None]] | None = None,
    ) -> T:
        """``work(cancel)`` in a worker thread; its result, or :class:`RequestTimeout` after
        ``timeout`` seconds (waiting for a slot included).

        On a timeout, or when the awaiting task is cancelled (uvicorn gave up on it), ``cancel``
        is set and this returns at once while the thread runs to its next check, slot held.
        ``watch(cancel)``, when given, runs alongside (it sets ``cancel`` when the client leaves).
        """
        if self.draining:
            raise ServerDrainingError("the server is shutting down and takes no new requests; send it again shortly")
        loop = asyncio.get_running_loop()
        cancel = cancel if cancel is not None else threading.Event()
        deadline = loop.time() + timeout
        await self._take_slot(cancel, timeout)
        done: asyncio.Future[T] = loop.create_future()
        # Nobody may await ``done`` after a timeout: read its outcome so asyncio does not log it.
        done.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._tokens.add(cancel)
        self.running += 1
        self.peak = max(self.peak, self.running)

        def settle(value: Any, exc: BaseException | None) -> None:  # on the event loop
            self.running -= 1
            self._tokens.discard(cancel)
            self._slots.release()
            if done.cancelled():
                return
            if exc is not None:
                done.set_exception(exc)
            else:
                done.set_result(value)

        def target() -> None:
            value: Any = None
            error: BaseException | None = None
            try:
                value = work(cancel)
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting request
                error = exc
            try:
                loop.call_soon_threadsafe(settle, value, error)
            except RuntimeError:  # the loop is closed: the server has exited
                log.debug("request work ended after the server stopped", exc_info=error)

        threading.Thread(target=target, name="citerag-request", daemon=True).start()
        watcher = asyncio.ensure_future(watch(cancel)) if watch is not None else None
        gave_up = asyncio.ensure_future(self._gave_up.wait())
        try:
            # ``done`` itself is never cancelled here: the thread settles it when it ends.
            await asyncio.wait(
                [done, gave_up], timeout=max(0.0, deadline - loop.time()), return_when=asyncio.FIRST_COMPLETED
            )
        except asyncio.CancelledError:
            cancel.set()
            raise
        finally:
            gave_up.cancel()
            if watcher is not None:
                watcher.cancel()
        if done.done():
            return done.result()
        cancel.set()
        self._raise_stopped()

    def _raise_stopped(self) -> None:
        if self._gave_up.is_set():
            raise ServerDrainingError(
                "the server is shutting down and stopped this request after its grace period (--grace-seconds); "
                "send it again"
            )
        raise RequestTimeout()

    async def _take_slot(self, cancel: threading.Event, timeout: float) -> None:
        """Wait for a free slot, at most ``timeout`` seconds or until the grace period ends."""
        acquire = asyncio.ensure_future(self._slots.acquire())
        gave_up = asyncio.ensure_future(self._gave_up.wait())
        stopped = True
        try:
            await asyncio.wait([acquire, gave_up], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            stopped = self._gave_up.is_set()
        finally:
            gave_up.cancel()
            got = acquire.done() and not acquire.cancelled() and acquire.exception() is None
            if not got:
                acquire.cancel()
            elif stopped:  # cancelled, or the grace period ended: give the slot back
                self._slots.release()
        if got and not stopped:
            return
        cancel.set()
        self._raise_stopped()

    async def drain(self, grace: float) -> None:
        """A graceful shutdown: refuse new work now; after ``grace`` seconds, cancel what still
        runs and answer its requests 503 at once (their threads stop at their next check)."""
        self.draining = True
        await asyncio.sleep(grace)
        self._gave_up.set()
        if n := self.cancel_all():
            log.warning("grace period over: cancelled %d request(s) still at work", n)

    def cancel_all(self) -> int:
        """Set the cancel token of all running work (shutdown); how many were running."""
        tokens = list(self._tokens)
        for token in tokens:
            token.set()
        return len(tokens)


async def watch_disconnect(receive: Callable[[], Awaitable[dict[str, Any]]], cancel: threading.Event) -> None:
    """Set ``cancel`` when the client disconnects (``receive`` is the request's ASGI receive,
    its body already read: the next message is ``http.disconnect``)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            cancel.set()
            return
