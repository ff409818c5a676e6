"""Errors in OpenAI's shape, for the OpenAI-compatible routes (:mod:`app.serve.openai_chat`).

OpenAI clients read ``{"error": {"message", "type", "param", "code"}}`` and pick their exception
class by the status (400 ``BadRequestError``, 401 ``AuthenticationError``, 404
``NotFoundError``...). The rest of the API keeps citerag's own shape; the middlewares of
:mod:`app.serve.guards` ask :func:`is_openai_path` which one a refused request gets. Kept free
of FastAPI so the guards can import it.
"""

from __future__ import annotations

from typing import Any

#: The routes that speak OpenAI's protocol.
OPENAI_PATHS = ("/v1/chat/completions", "/v1/models")

#: OpenAI's ``type`` for each status class it documents.
_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def is_openai_path(path: str) -> bool:
    return path in OPENAI_PATHS or path.startswith("/v1/models/")


def openai_error(status: int, message: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """The body of an OpenAI-style error answer."""
    type_ = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


#: ``code`` of the refusals the middlewares make.
MIDDLEWARE_CODES = {401: "invalid_api_key", 413: "request_too_large", 400: "host_not_allowed"}
