"""The server's gatekeepers, as plain ASGI middleware: the Host-header check, the API key (and
the web page's login cookie), the body-size limit.

**Host headers (DNS rebinding).** A page on ``http://evil.example`` whose name the attacker
re-points at 127.0.0.1 is, for the browser, the same origin as its own server: its scripts
could read ``/v1/ask`` and ``/v1/documents`` of a server on the user's loopback, and through them
the private corpus. Its requests still carry ``Host: evil.example``, so a server answers only
host names it knows (any port):

* ``--allowed-hosts h1,h2`` given: those names and the loopback names (``*``: any host);
* else, with ``--api-key``: any host (a rebinding page does not have the key, and the login
  cookie is never sent to its name);
* else, bound to loopback (the default): ``localhost``, ``127.0.0.1`` and ``[::1]`` only;
* else (bound to another address without a key): the loopback names, the bind address, this
  machine's host name, and any IP address written as such (a browser sends an IP literal only
  for a page loaded from that address, which cannot be the attacker's).

Other hosts get 400 naming ``--allowed-hosts``.

**Login cookie.** ``POST /login`` checks the key and sets a cookie holding a session token
derived from it (HMAC-SHA256 of a fixed label keyed by the API key), never the key itself:
``HttpOnly``, ``SameSite=Strict``, and ``Secure`` when the login came over https (directly or
through a proxy uvicorn trusts for ``X-Forwarded-Proto``). It stays valid across restarts and
stops working when the key changes. Keys and tokens are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from starlette.exceptions import HTTPException as StarletteHTTPException

from app.serve.openai_errors import MIDDLEWARE_CODES, is_openai_path, openai_error

COOKIE = "citerag_session"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
_WILDCARD_BINDS = ("0.0.0.0", "::", "")
_SESSION_LABEL = b"citerag web page session v1"

Send = Callable[[dict[str, Any]], Awaitable[None]]


async def send_json(send: Send, status: int, message: str, type_: str, path: str = "") -> None:
    """An error answer in the API's JSON shape (OpenAI's on the OpenAI-compatible paths),
    from inside a middleware."""
    if is_openai_path(path):
        payload = openai_error(status, message, code=MIDDLEWARE_CODES.get(status))
    else:
        payload = {"error": {"type": type_, "message": message, "status": status}}
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# -- Host headers -------------------------------------------------------------------------


def host_name(header: str) -> str:
    """The host of a Host header, lower-cased, without port or trailing dot; IPv6 in brackets."""
    h = header.strip().lower()
    if h.startswith("["):
        end = h.find("]")
        return h[: end + 1] if end > 0 else h
    name = h.rsplit(":", 1)[0] if h.count(":") == 1 else h
    return name.rstrip(".")


def _is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name[1:-1] if name.startswith("[") else name)
    except ValueError:
        return False
    return True


def is_loopback_bind(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class HostPolicy:
    """Which Host headers this server answers (see the module docstring)."""

    def __init__(self, names: Iterable[str], *, any_ip: bool = False) -> None:
        self.names = frozenset(host_name(n) for n in names)
        self.any_ip = any_ip

    def allows(self, header: str) -> bool:
        name = host_name(header)
        return name in self.names or (self.any_ip and _is_ip_literal(name))

    def describe(self) -> str:
        shown = ", ".join(sorted(self.names))
        return shown + (" and any IP address" if self.any_ip else "")


def host_policy(allowed: Iterable[str] | None, api_key: str | None, bind: str) -> HostPolicy | None:
    """The Host policy for these settings; None when any host is answered."""
    if allowed is not None:
        names = [n.strip() for n in allowed if n.strip()]
        if "*" in names:
            return None
        return HostPolicy([*names, *LOOPBACK_NAMES])
    if api_key:
        return None
    if is_loopback_bind(bind):
        return HostPolicy(LOOPBACK_NAMES)
    names = list(LOOPBACK_NAMES)
    if bind not in _WILDCARD_BINDS:
        names.append(f"[{bind}]" if ":" in bind else bind)
    hostname = socket.gethostname()
    names += [hostname, hostname.split(".")[0]]
    return HostPolicy(names, any_ip=True)


class HostCheckMiddleware:
    """400 for a Host header the policy does not allow (requests without one pass: no browser
    sends those)."""

    def __init__(self, app: Any, policy: HostPolicy) -> None:
        self.app, self.policy = app, policy

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        raw = dict(scope.get("headers") or []).get(b"host")
        header = raw.decode("latin-1") if raw is not None else None
        if header is None or self.policy.allows(header):
            await self.app(scope, receive, send)
            return
        name = host_name(header)
        await send_json(
            send,
            400,
            f"this server does not answer to the host name {name!r} (it answers {self.policy.describe()}): "
            "a guard against DNS-rebinding pages reading your index. If you reach it under that name, "
            f"start it with --allowed-hosts {name} (or --allowed-hosts '*'), or with --api-key",
            "HostNotAllowed",
            scope.get("path", ""),
        )


# -- the API key and the login cookie -------------------------------------------------------


def session_token(key: str) -> str:
    """The login cookie's value for API key ``key``: it authenticates, but does not reveal the key."""
    return hmac.new(key.encode(), _SESSION_LABEL, hashlib.sha256).hexdigest()


def key_matches(given: str, key: str) -> bool:
    return hmac.compare_digest(given.encode(), key.encode())


class AuthMiddleware:
    """Bearer-token auth on every path but ``/healthz`` (and ``/login``, which checks the key).

    The key is accepted as ``Authorization: Bearer KEY`` or, for the web page, as the session
    cookie that ``POST /login`` sets (:func:`session_token`)."""

    OPEN = ("/healthz", "/login")

    def __init__(self, app: Any, key: str) -> None:
        self.app, self.key = app, key.encode()
        self.token = session_token(key).encode()

    def ok(self, headers: dict[bytes, bytes]) -> bool:
        auth = headers.get(b"authorization", b"")
        if auth[:7].lower() == b"bearer " and hmac.compare_digest(auth[7:].strip(), self.key):
            return True
        for part in headers.get(b"cookie", b"").split(b";"):
            name, _, value = part.strip().partition(b"=")
            if name == COOKIE.encode() and hmac.compare_digest(value.strip(b'"'), self.token):
                return True
        return False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.OPEN or self.ok(dict(scope.get("headers") or [])):
            await self.app(scope, receive, send)
            return
        if scope["path"] == "/" and scope.get("method") == "GET":
            body = LOGIN_PAGE.encode()
            await send({"type": "http.response.start", "status": 401, "headers": [
                (b"content-type", b"text/html; charset=utf-8"), (b"www-authenticate", b"Bearer"),
                (b"content-length", str(len(body)).encode())]})  # fmt: skip
            await send({"type": "http.response.body", "body": body})
            return
        await send_json(
            send, 401, "this server needs an API key: send 'Authorization: Bearer KEY'", "Unauthorized", scope["path"]
        )


LOGIN_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>citerag: API key</title>
<link rel="stylesheet" href="data:,"></head><body style="font-family:sans-serif;max-width:30em;margin:4em auto">
<h1>citerag</h1><p>This server needs its API key.</p>
<form method="post" action="/login"><input type="password" name="key" placeholder="API key" autofocus>
<button type="submit">Enter</button></form></body></html>"""


# -- body size ----------------------------------------------------------------------------------


class BodyLimitMiddleware:
    """413 for request bodies over ``limit`` bytes (by Content-Length, or while reading)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        msg = f"the request body is larger than this server accepts ({self.limit} bytes, --max-body-bytes)"
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await send_json(send, 413, msg, "PayloadTooLarge", scope["path"])
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
