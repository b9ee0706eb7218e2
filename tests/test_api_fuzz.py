"""Schema-driven fuzzing of the public API (schemathesis): whatever a client sends, never a 5xx,
and every error is OpenAI-shaped. The deployment's budget cap is low so valid requests stay cheap."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.conftest import Backends, LiveService, service_settings


@pytest.fixture(scope="module")
def fuzz_service(backends: Backends) -> Iterator[LiveService]:
    with LiveService(service_settings(backends, max_flops_budget=3e9,
                                      default_flops_budget=2e9)) as live:
        yield live


@pytest.fixture(scope="module")
def api_schema(fuzz_service: LiveService) -> schemathesis.BaseSchema:
    schema = schemathesis.openapi.from_url(f"{fuzz_service.url}/openapi.json")
    schema.config.update(base_url=fuzz_service.url)
    return schema


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_openai_shaped_errors(case: schemathesis.Case) -> None:
    response = case.call(timeout=120)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert error["message"] and error["type"]
