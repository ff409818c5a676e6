"""Schemathesis against the real server's ``/openapi.json``: every operation, valid and invalid
requests generated from the schema (issue 12).

The rule: no 500, and every status the server answers is one the schema documents (the 4xx
it promises, 503 when not ready, 504 past the request timeout), with a body that matches the
documented model. The server is real (uvicorn, the sample index, MiniLM retrieval, the default
judge for grounding and verify); the generator is a canned one, since what is under test is the
HTTP layer's handling of any request, not the words of an answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from test_serve import serving
from test_serve import settings as serve_settings

pytestmark = pytest.mark.slow

#: What every response must satisfy; ``status_code_conformance`` holds the server to the codes
#: its schema lists, ``response_schema_conformance`` to the documented bodies.
#: ``negative_data_rejection``: a request the schema forbids must get a 4xx, never a 2xx.
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
)


@pytest.fixture(scope="module")
def api_url(sample_index: Path) -> Iterator[str]:
    from fakes import FakeGenerator

    answer = "The Golden Gate Bridge opened to traffic in 1937 [1]. It spans the Golden Gate strait [" + "9" * 60 + "]."
    with serving(serve_settings(sample_index, request_timeout=60.0), generator=FakeGenerator([answer])) as url:
        yield url


#: Every operation /openapi.json lists; a test below fails when the schema gains one not here.
OPERATIONS = [
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/v1/info"),
    ("POST", "/v1/ask"),
    ("POST", "/v1/revise"),
    ("GET", "/v1/documents/{doc_id}"),
    ("POST", "/v1/attribute"),
    ("POST", "/v1/eval"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/{model_id}"),
    ("POST", "/v1/chat/completions"),
]
#: Examples per operation and generation mode (the slow ones judge and research every request).
EXAMPLES = {"POST /v1/revise": 8, "POST /v1/eval": 12, "POST /v1/attribute": 12}


@pytest.fixture(scope="module")
def api_schema(api_url: str) -> Any:
    import schemathesis.specs.openapi.checks  # noqa: F401 - registers the OpenAPI checks

    schema = schemathesis.openapi.from_url(f"{api_url}/openapi.json")
    schema.config.update(base_url=api_url)
    return schema


def test_the_fuzzed_operations_are_all_of_them(api_schema: Any) -> None:
    listed = {(op.ok().method.upper(), op.ok().path) for op in api_schema.get_all_operations()}
    assert listed == set(OPERATIONS)


#: Negative cases need something to get wrong: the operations with a body or parameters (a model
#: id is any string, so ``/v1/models/{model_id}`` has none).
CASES = [(m, p, "positive") for m, p in OPERATIONS] + [
    (m, p, "negative") for m, p in OPERATIONS if (m == "POST" or "{" in p) and p != "/v1/models/{model_id}"
]


@pytest.mark.parametrize(("method", "path", "mode"), CASES, ids=[f"{m} {p} {g}" for m, p, g in CASES])
def test_every_operation_answers_within_its_documented_statuses(
    api_schema: Any, method: str, path: str, mode: str
) -> None:
    from hypothesis import given
    from schemathesis.checks import CHECKS as REGISTRY

    checks = REGISTRY.get_by_names(list(CHECKS))
    operation = api_schema[path][method]
    strategy = operation.as_strategy(generation_mode=GenerationMode(mode))
    seen: dict[int, int] = {}

    @settings(max_examples=EXAMPLES.get(f"{method} {path}", 25), deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case: Any) -> None:
        response = case.call(timeout=120)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        assert response.status_code != 500, response.text[:500]
        case.validate_response(response, checks=checks)

    run()
    assert seen  # the operation was called
