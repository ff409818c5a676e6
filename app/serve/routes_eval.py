"""Routes over ``eval``: ``POST /v1/eval`` (``citerag eval``) and ``POST /v1/attribute``
(``citerag attribute``). :func:`register` always adds both (the ``eval`` modules are imported
here, so a broken install fails when the app is built, not silently); the web page shows its
saliency control when ``/v1/attribute`` is listed by ``/v1/info``."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from app.serve.schemas import ERROR_RESPONSES
from eval.formats import predictions_from_rows
from eval.saliency import attribute as attribute_answers
from eval.saliency.context import answer_from_dict
from eval.scoring import EvalConfig
from eval.scoring import evaluate as evaluate_examples
from pipeline.errors import ConfigError, InputError

_ERRORS = ERROR_RESPONSES


class AttributeRequest(BaseModel):
    """``POST /v1/attribute``: which evidence each sentence of an answer depended on."""

    model_config = ConfigDict(extra="forbid")

    answer: dict[str, Any] = Field(description="An answer as /v1/ask (or `citerag ask --json`) returns it.")
    methods: list[str] = Field(
        ["loo"], description="Attribution methods: loo, contextcite (any backend); ig, ixg (transformers backend only)."
    )
    level: Literal["passage", "sentence"] = Field(
        "sentence", description="Attribute to whole passages or to their sentences."
    )


class AttributeResponse(BaseModel):
    """``citerag attribute --json``: per method, ``scores[j][i]`` is how much source ``i``
    raised the log-probability of answer sentence ``j`` (nats)."""

    model_config = ConfigDict(extra="allow")

    question: str
    answer: str
    level: str
    sentences: list[dict[str, Any]]
    passages: list[dict[str, Any]]
    sources: list[dict[str, Any]] = Field(
        description="index, label ([2] or [2].3), passage, sentence, start, end, text."
    )
    methods: dict[str, Any]


class EvalRequest(BaseModel):
    """``POST /v1/eval``: score predictions as ``citerag eval --pred FILE --json`` does."""

    model_config = ConfigDict(extra="forbid")

    predictions: list[dict[str, Any]] = Field(
        description="The rows of a predictions file: ask or revise JSON, or ALCE's format."
    )
    format: Literal["auto", "alce", "ask", "revise"] = "auto"
    threshold: float | None = Field(
        None, ge=0.0, le=1.0, description="Support threshold (default: the judge's calibrated one)."
    )
    at_most_citations: int = Field(3, ge=0, description="Citations judged per sentence (ALCE); 0: all.")
    qampari: bool = False
    attribution: bool = Field(True, description="Also RARR attribution (every sentence against every document).")
    rows: bool = Field(False, description="Also return one row per example with each sentence's decisions.")


def register(app: FastAPI, service: Any, run: Callable[..., Any]) -> None:
    """Add ``POST /v1/attribute`` and ``POST /v1/eval``."""
    _add_attribute(app, service, run)
    _add_eval(app, service, run)


def _add_attribute(app: FastAPI, service: Any, run: Callable[..., Any]) -> None:
    @app.post("/v1/attribute", response_model=AttributeResponse, tags=["api"], responses=_ERRORS)
    async def attribute(req: AttributeRequest) -> JSONResponse:
        """Saliency of the evidence for each answer sentence (``citerag attribute --json``), with
        the server's generator and prompt settings."""

        def work() -> dict[str, Any]:
            service.require_ready()
            answer = answer_from_dict(req.answer, where="answer")
            report = attribute_answers(
                service.generator, [answer], req.methods, req.level, cfg=service.pipeline.prompt
            )[0]
            return report.to_dict()

        return JSONResponse(await run(work))


def _add_eval(app: FastAPI, service: Any, run: Callable[..., Any]) -> None:
    @app.post("/v1/eval", tags=["api"], responses=_ERRORS)
    async def evaluate(req: EvalRequest) -> JSONResponse:
        """Citation recall / precision / F1 (ALCE), RARR attribution and preservation, answer
        correctness (``citerag eval --json``), judged by the server's support judge."""

        def work() -> dict[str, Any]:
            if not req.predictions:
                raise InputError("predictions is empty: send the rows of a predictions file")
            if service.settings.judge == "llm":
                raise ConfigError(
                    "/v1/eval cannot use the llm judge: start the server with --judge default or a model folder"
                )
            preds = predictions_from_rows(req.predictions, req.format)
            judge = service.judge()
            threshold = req.threshold if req.threshold is not None else float(judge.threshold)
            config = EvalConfig(threshold=threshold, at_most_citations=req.at_most_citations or None,
                                qampari=req.qampari, attribution=req.attribution)  # fmt: skip
            evaluation = evaluate_examples(preds.examples, judge.judge, config, chunk_size=1024)
            metrics: dict[str, Any] = {"format": preds.kind, **evaluation.metrics(), "skipped": len(preds.skipped)}
            metrics["judge"] = {"name": service.settings.judge, **metrics.get("judge", {})}
            if req.rows:
                metrics["rows"] = evaluation.rows()
            return _finite(metrics)

        return JSONResponse(await run(work))


def _finite(value: Any) -> Any:
    """``value`` with NaN / infinite floats as None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
