"""The OpenAI-compatible routes: ``GET /v1/models`` and ``POST /v1/chat/completions``.

Applications written against OpenAI's protocol (the ``openai`` client, LangChain's
``ChatOpenAI``, anything with a ``base_url``) get citerag's answers without new code. A chat
request is turned into a ``/v1/ask`` request and answered by the same service, with the same
defaults, limits, timeouts and API key; what differs is only the shape:

* **Models.** ``/v1/models`` lists one id, :data:`MODEL_ID`. A request may name any model
  (clients often hard-code one): the answer always comes from this server's pipeline, and the
  response's ``model`` says :data:`MODEL_ID`.
* **Messages.** The last user message is the question; earlier user turns join the retrieval
  query (:mod:`app.serve.chat_query` has the rule). ``content`` is a string or a list of text
  parts (``{"type": "text", "text": ...}``); other parts are refused.
* **Parameters.** ``max_completion_tokens`` (or the older ``max_tokens``) is the answer's token
  budget, capped by ``--max-tokens-limit``; ``temperature`` (0 to 2) replaces the server's; ``n``
  must be 1. Every other field OpenAI clients send (``top_p``, ``tools``, ``user``...) is ignored.
* **The answer.** A ``chat.completion`` whose message content carries the ``[n]`` markers (those
  the generator wrote, plus the post-hoc citations' markers before each sentence's final
  punctuation) and a top-level ``citations`` list, one entry per number used: document id,
  title, span, page, the passage text and a quote (the smallest span the judge found
  supportive, else the whole passage).
* **Streaming.** ``stream: true`` sends ``chat.completion.chunk`` events over the very stream
  ``/v1/ask`` uses (its events are translated here, so the two never diverge): a first chunk
  with the role, a content delta per piece of generated text, then a chunk with
  ``finish_reason``, ``citations`` and ``final_content`` (the content the non-streaming answer
  has, which differs from the streamed text only when cleaning, post-hoc markers or abstention
  changed it), a usage chunk when ``stream_options.include_usage`` asks for it, and
  ``data: [DONE]``.
* **Errors** take OpenAI's shape (:mod:`app.serve.openai_errors`): 400 for any request that is
  invalid (OpenAI clients raise ``BadRequestError``), 401, 404, 413, 503, 504 as elsewhere.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.serve.chat_query import ChatInputError, Turn, chat_query
from app.serve.openai_errors import openai_error
from app.serve.schemas import AskRequest
from app.serve.work import RequestTimeout
from pipeline.citations import with_markers
from pipeline.errors import CiteragError

#: The one model id ``/v1/models`` lists and every response names.
MODEL_ID = "citerag"

#: Sentence-final punctuation a post-hoc marker is put before ("... 1937 [2].").


# -- request and response bodies ------------------------------------------------------------


class _Loose(BaseModel):
    """OpenAI clients send many fields this server does not use: they are ignored."""

    model_config = ConfigDict(extra="allow", strict=True)


class ContentPart(_Loose):
    type: str = Field(description='Only "text" parts are accepted.')
    text: str | None = None


class ChatMessage(_Loose):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = Field(
        None, description="A string, or a list of text parts whose texts are joined by newlines."
    )


class StreamOptions(_Loose):
    include_usage: bool = False


class ChatCompletionRequest(_Loose):
    """``POST /v1/chat/completions``: OpenAI's request; the fields below are the ones read."""

    model: str = Field(description=f"Any id: the answer comes from this server's pipeline ({MODEL_ID!r}).")
    messages: list[ChatMessage] = Field(
        min_length=1, description="The conversation: its last user message is the question."
    )
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_completion_tokens: int | None = Field(None, ge=1, description="Answer token budget (--max-tokens-limit caps).")
    max_tokens: int | None = Field(None, ge=1, description="The older name of max_completion_tokens.")
    temperature: float | None = Field(None, ge=0.0, le=2.0, description="Sampling temperature (default: the server's).")
    n: int | None = Field(None, ge=1, description="Choices to generate: only 1.")


class ChatAsk(AskRequest):
    """The ``/v1/ask`` request a chat becomes (read by ``CiteragService.request_pipeline``)."""

    retrieval_query: str | None = None
    temperature: float | None = None


class CitationOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    n: int = Field(description="The number in the content's [n] markers.")
    doc_id: str
    title: str = ""
    start: int = Field(description="The passage's span in its document: document[start:end] == text.")
    end: int
    page: int | None = Field(None, description="1-based page of the passage (documents with pages), else null.")
    page_end: int | None = None
    text: str = Field(description="The passage shown to the generator.")
    quote: str = Field(description="The span supporting the answer (the whole passage when none was found).")
    quote_start: int
    quote_end: int


class ChatMessageOut(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChoiceOut(BaseModel):
    index: int = 0
    message: ChatMessageOut
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class UsageOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletionOut(BaseModel):
    """A ``chat.completion`` with citerag's ``citations``."""

    model_config = ConfigDict(extra="allow")

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChoiceOut]
    usage: UsageOut | None = None
    citations: list[CitationOut]


class ModelOut(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelListOut(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelOut]


class OpenAIErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorResponse(BaseModel):
    error: OpenAIErrorBody


_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": OpenAIErrorResponse} for code in (400, 401, 413, 503, 504)}

_CHUNK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"data": {"type": "string", "description": "A chat.completion.chunk as JSON, or [DONE]."}},
}


# -- errors ---------------------------------------------------------------------------------


def error_response(status: int, message: str, param: str | None = None, code: str | None = None) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(openai_error(status, message, param, code), status_code=status, headers=headers)


def _snake(name: str) -> str | None:
    """An error ``code`` from a citerag error class name (``GeneratorUnavailableError`` ->
    ``generator_unavailable``); None for none."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name.removesuffix("Error")).lower() or None


def citerag_error_response(exc: CiteragError) -> JSONResponse:
    """A citerag error as OpenAI's: a request citerag finds invalid (422) is OpenAI's 400."""
    status = 400 if exc.http_status == 422 else exc.http_status
    resp = error_response(status, str(exc), getattr(exc, "param", None), _snake(type(exc).__name__))
    if (retry := getattr(exc, "retry_after", None)) is not None:
        resp.headers["Retry-After"] = str(retry)
    return resp


def _param(loc: Sequence[Any]) -> str | None:
    """``messages[0].content`` for pydantic's ``("body", "messages", 0, "content", "str")``: the
    path up to the first union-member tag."""
    out = ""
    for part in loc:
        if part == "body" and not out:
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part.isidentifier() and part not in ("str", "int", "float", "bool"):
            out += f".{part}" if out else part
        else:
            break
    return out or None


def validation_response(exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    parts = list(dict.fromkeys(f"{_param(e.get('loc', ())) or 'body'}: {e.get('msg', 'invalid')}" for e in errors))
    param = _param(errors[0].get("loc", ())) if errors else None
    return error_response(400, "invalid request: " + "; ".join(parts), param, "invalid_request")


class OpenAIRoute(APIRoute):
    """A route whose every failure, body validation included, is answered in OpenAI's shape
    (the app's own handlers answer citerag's shape, and 422 for bad bodies)."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handle = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await handle(request)
            except RequestValidationError as exc:
                return validation_response(exc)
            except CiteragError as exc:
                return citerag_error_response(exc)
            except RequestTimeout:
                return error_response(
                    504, "the request took longer than this server's --request-timeout; retry later", None, "timeout"
                )
            except StarletteHTTPException as exc:
                return error_response(exc.status_code, str(exc.detail))

        return handler


# -- from a chat to an ask, and from an answer to a completion --------------------------------


def message_text(message: ChatMessage, i: int) -> str:
    content = message.content
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for j, part in enumerate(content):
        if part.type != "text" or part.text is None:
            raise ChatInputError(
                f"messages[{i}].content[{j}] is a {part.type!r} part: citerag reads text parts only",
                f"messages[{i}].content[{j}]",
            )
        texts.append(part.text)
    return "\n".join(texts)


def to_ask(body: ChatCompletionRequest, max_tokens_limit: int) -> ChatAsk:
    """The ``/v1/ask`` request of a chat request (raises :class:`ChatInputError`)."""
    if body.n not in (None, 1):
        raise ChatInputError(f"n is {body.n}: this server gives one choice per request", "n")
    query = chat_query([Turn(m.role, message_text(m, i)) for i, m in enumerate(body.messages)])
    max_tokens = body.max_completion_tokens or body.max_tokens
    if max_tokens is not None and max_tokens > max_tokens_limit:
        param = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
        raise ChatInputError(
            f"{param} is {max_tokens}; this server allows at most {max_tokens_limit} (--max-tokens-limit)", param
        )
    return ChatAsk(
        question=query.question,
        retrieval_query=query.retrieval_query if query.retrieval_query != query.question else None,
        max_tokens=max_tokens,
        temperature=body.temperature,
        stream=body.stream,
    )


def content_of(answer: dict[str, Any]) -> str:
    """The answer text with a marker for every post-hoc citation (the generator wrote none
    there), put before the sentence's final punctuation, so each cited number is in the text."""
    text = answer["answer"]
    for s in sorted(answer["sentences"], key=lambda s: s["start"], reverse=True):
        if s.get("post_hoc") and s["citations"]:
            text = text[: s["start"]] + with_markers(text[s["start"] : s["end"]], s["citations"]) + text[s["end"] :]
    return text


def citations_of(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per cited number: the passage, its page, and its supporting quote."""
    quotes: dict[int, dict[str, Any]] = {}
    for s in answer["sentences"]:
        for q in s.get("quotes") or ():
            quotes.setdefault(q["n"], q)
    out = []
    for c in answer["citations"]:
        q = quotes.get(c["n"], c)
        out.append({
            "n": c["n"], "doc_id": c["doc_id"], "title": c.get("title", ""), "start": c["start"], "end": c["end"],
            "page": c.get("page"), "page_end": c.get("page_end"), "text": c["text"],
            "quote": q["text"], "quote_start": q["start"], "quote_end": q["end"],
        })  # fmt: skip
    return out


def raw_text(answer: dict[str, Any]) -> str:
    """What the generator wrote (before cleaning and abstention)."""
    cleaned = (answer.get("cleaned") or {}).get("raw_text")
    if cleaned is not None:
        return cleaned
    return (answer.get("draft") or {}).get("answer", answer["answer"])


class Completion:
    """The pieces of one request's ``chat.completion`` (and its chunks): id, time, and how
    tokens are counted (``count``: the generator's tokenizer, or None)."""

    def __init__(self, count: Callable[[str], int] | None, max_tokens: int) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.count = count
        self.max_tokens = max_tokens

    def usage(self, answer: dict[str, Any], content: str) -> dict[str, int] | None:
        prompt = answer.get("prompt_tokens")
        if self.count is None or not isinstance(prompt, int):
            return None
        done = self.count(content)
        return {"prompt_tokens": prompt, "completion_tokens": done, "total_tokens": prompt + done}

    def finish_reason(self, answer: dict[str, Any]) -> str:
        """``length`` when the generation used its whole token budget."""
        if self.count is not None and self.count(raw_text(answer)) >= self.max_tokens:
            return "length"
        return "stop"

    def whole(self, answer: dict[str, Any]) -> dict[str, Any]:
        content = content_of(answer)
        return {
            "id": self.id, "object": "chat.completion", "created": self.created, "model": MODEL_ID,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": self.finish_reason(answer), "logprobs": None}],
            "usage": self.usage(answer, content), "citations": citations_of(answer),
        }  # fmt: skip

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> bytes:
        body = {
            "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": MODEL_ID,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}], **extra,
        }  # fmt: skip
        return sse_data(body)

    def last_chunks(self, answer: dict[str, Any], include_usage: bool) -> list[bytes]:
        content = content_of(answer)
        out = [self.chunk({}, self.finish_reason(answer), citations=citations_of(answer), final_content=content)]
        if include_usage:
            body = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": MODEL_ID,
                    "choices": [], "usage": self.usage(answer, content)}  # fmt: skip
            out.append(sse_data(body))
        return out


def sse_data(body: Any) -> bytes:
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n".encode()


DONE = b"data: [DONE]\n\n"


class SSEReader:
    """Parses the ``event:``/``data:`` stream of ``/v1/ask`` back into (event, data) pairs."""

    def __init__(self) -> None:
        self._buf = ""

    def feed(self, raw: bytes | str) -> list[tuple[str, Any]]:
        self._buf += raw.decode() if isinstance(raw, bytes) else raw
        *blocks, self._buf = self._buf.split("\n\n")
        events = []
        for block in blocks:
            name, data = "message", []
            for line in block.split("\n"):
                if line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip())
            if data:
                events.append((name, json.loads("\n".join(data))))
        return events


# -- the routes -------------------------------------------------------------------------------


def register(
    app: FastAPI,
    service: Any,
    run: Callable[..., Awaitable[Any]],
    stream_ask: Callable[[AskRequest, Request], Awaitable[Response]],
) -> None:
    """Add the OpenAI-compatible routes; ``run`` and ``stream_ask`` are the app's worker-thread
    runner and ``/v1/ask``'s streaming path."""
    router = APIRouter(route_class=OpenAIRoute, tags=["openai"])
    started = int(time.time())
    model = {"id": MODEL_ID, "object": "model", "created": started, "owned_by": "citerag"}

    @router.get("/v1/models", response_model=ModelListOut, responses={401: {"model": OpenAIErrorResponse}})
    async def models() -> dict[str, Any]:
        """The model id this server answers as (any id is accepted in requests)."""
        return {"object": "list", "data": [model]}

    @router.get(
        "/v1/models/{model_id}",
        response_model=ModelOut,
        responses={code: {"model": OpenAIErrorResponse} for code in (401, 404)},
    )
    async def model_info(model_id: str) -> Response:
        """The listed model; 404 for any other id."""
        if model_id != MODEL_ID:
            return error_response(404, f"no model {model_id!r} here: this server lists {MODEL_ID!r}", "model",
                                  "model_not_found")  # fmt: skip
        return JSONResponse(model)

    def counter() -> Callable[[str], int] | None:
        tokenizer = getattr(service.generator, "tokenizer", None)
        return (lambda text: len(tokenizer.encode(text))) if tokenizer is not None else None

    @router.post(
        "/v1/chat/completions",
        response_model=ChatCompletionOut,
        responses={
            **_ERRORS,
            200: {
                "content": {"text/event-stream": {"schema": _CHUNK_SCHEMA}},
                "description": "A chat.completion (JSON), or with `stream` chat.completion.chunk events",
            },
        },  # fmt: skip
    )
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        """Answer the conversation's last user message with citations, in OpenAI's format."""
        ask = to_ask(body, service.settings.max_tokens_limit)
        budget = ask.max_tokens or service.settings.max_tokens
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return await _stream(ask, request, Completion(counter(), budget), include_usage)

        def work(cancel: Any) -> dict[str, Any]:
            answer = service.ask(ask, cancel=cancel)
            return Completion(counter(), budget).whole(answer)

        return JSONResponse(await run(work, request=request))

    async def _stream(ask: ChatAsk, request: Request, completion: Completion, include_usage: bool) -> Response:
        resp = await stream_ask(ask, request)
        if not isinstance(resp, StreamingResponse):  # refused before the first event
            err = json.loads(bytes(resp.body)).get("error", {})
            status = 400 if resp.status_code == 422 else resp.status_code
            return error_response(status, err.get("message", "the request failed"), None, _snake(err.get("type", "")))
        events = resp.body_iterator

        async def chunks() -> AsyncIterator[bytes]:
            reader = SSEReader()
            try:
                yield completion.chunk({"role": "assistant", "content": ""})
                async for raw in events:
                    for name, data in reader.feed(raw):
                        if name == "token" and data.get("text"):
                            yield completion.chunk({"content": data["text"]})
                        elif name == "final":
                            for last in completion.last_chunks(data, include_usage):
                                yield last
                        elif name == "error":
                            status = 400 if data.get("status") == 422 else data.get("status", 500)
                            yield sse_data(openai_error(status, data.get("message", ""), None,
                                                        _snake(data.get("type", ""))))  # fmt: skip
                yield DONE
            finally:
                close = getattr(events, "aclose", None)
                if close is not None:
                    await close()  # stops the generation when the client left

        return StreamingResponse(
            chunks(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )

    app.include_router(router)
