"""Routes over ``eval``: ``POST /v1/eval`` (``citerag eval``) and ``POST /v1/attribute``
(``citerag attribute``). :func:`register` always adds both (the ``eval`` modules are imported
here, so a broken install fails when the app is built, not silently); the web page shows its
saliency control when ``/v1/attribute`` is listed by ``/v1/info``."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from app.serve.schemas import ERROR_RESPONSES
from eval.formats import predictions_from_rows
from eval.saliency import attribute as attribute_answers
from eval.saliency.context import answer_from_dict
from eval.scoring import EvalConfig, attribution_needs, read_example
from eval.scoring import evaluate as evaluate_examples
from pipeline.errors import ConfigError, InputError

_ERRORS = ERROR_RESPONSES


class TooManyPairsError(InputError):
    """A ``POST /v1/eval`` that would need more judge pairs than ``--max-eval-pairs``."""

    http_status = 413


def count_pairs(examples: Any, config: EvalConfig) -> int:
    """An upper bound on the judge pairs :func:`eval.scoring.evaluate` sends for ``examples``,
    read without any model: RARR attribution's sentence x document pairs, and for each sentence
    ALCE judges, its joint pair plus, with several citations, one pair alone and one without
    per citation (ALCE asks for the last two only where earlier scores make them decide)."""
    total = 0
    for ex in examples:
        read = read_example(ex, config)
        if config.attribution:
            total += len(attribution_needs(read))
        for plan in read.citations.sentences:
            if plan.status == "judged":
                total += 1 + (2 * len(plan.used) if len(plan.used) > 1 else 0)
    return total


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
    async def attribute(req: AttributeRequest, request: Request) -> JSONResponse:
        """Saliency of the evidence for each answer sentence (``citerag attribute --json``), with
        the server's generator and prompt settings."""

        def work(cancel: Any) -> dict[str, Any]:
            service.require_ready()
            answer = answer_from_dict(req.answer, where="answer")
            generator = service.checked_generator(cancel)
            report = attribute_answers(generator, [answer], req.methods, req.level, cfg=service.pipeline.prompt)[0]
            return report.to_dict()

        return JSONResponse(await run(work, request=request))


def _add_eval(app: FastAPI, service: Any, run: Callable[..., Any]) -> None:
    @app.post("/v1/eval", tags=["api"], responses=_ERRORS)
    async def evaluate(req: EvalRequest, request: Request) -> JSONResponse:
        """Citation recall / precision / F1 (ALCE), RARR attribution and preservation, answer
        correctness (``citerag eval --json``), judged by the server's support judge.

        A request that would need more judge pairs than the server's ``--max-eval-pairs``
        (counted before any judging: see ``count_pairs``) gets 413."""

        def work(cancel: Any) -> dict[str, Any]:
            if not req.predictions:
                raise InputError("predictions is empty: send the rows of a predictions file")
            if service.settings.judge == "llm":
                raise ConfigError(
                    "/v1/eval cannot use the llm judge: start the server with --judge default or a model folder"
                )
            preds = predictions_from_rows(req.predictions, req.format)
            config = EvalConfig(threshold=0.5, at_most_citations=req.at_most_citations or None,
                                qampari=req.qampari, attribution=req.attribution)  # fmt: skip
            limit = service.settings.max_eval_pairs
            pairs = count_pairs(preds.examples, config)
            if pairs > limit:
                raise TooManyPairsError(
                    f"these predictions need up to {pairs} judge pairs (sentences x documents, and the "
                    f"citations of each sentence); this server judges at most {limit} per request "
                    "(--max-eval-pairs): send fewer predictions per request, or set attribution: false"
                )
            judge = service.checked_judge(cancel)
            threshold = req.threshold if req.threshold is not None else float(judge.threshold)
            config = replace(config, threshold=threshold)
            evaluation = evaluate_examples(preds.examples, judge.judge, config, chunk_size=1024)
            metrics: dict[str, Any] = {"format": preds.kind, **evaluation.metrics(), "skipped": len(preds.skipped)}
            metrics["judge"] = {"name": service.settings.judge, **metrics.get("judge", {})}
            if req.rows:
                metrics["rows"] = evaluation.rows()
            return _finite(metrics)

        return JSONResponse(await run(work, request=request))


def _finite(value: Any) -> Any:
    """``value`` with NaN / infinite floats as None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
