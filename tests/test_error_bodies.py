"""What an error says to a client: a stable message, type, param and code — never a backend's
address, a file path, an exception's class or a backend's own words (those stay in the log)."""

from __future__ import annotations

import random
import string
from typing import Any

import httpx

from bench.faults import INTERNALS
from tests.conftest import Backends, LiveService, service_settings
from ttc_serve.app.protocol import CompletionRequest
from ttc_serve.app.settings import Settings
from ttc_serve.models.launcher import free_port

MODEL = Settings().model_name

HOSTILE: list[tuple[str, Any]] = [
    ("/v1/completions", b"{not json"),
    ("/v1/completions", b"[1, 2, 3]"),
    ("/v1/completions", b'"just a string"'),
    ("/v1/completions", {"model": MODEL}),
    ("/v1/completions", {"model": MODEL, "prompt": {"nested": True}}),
    ("/v1/completions", {"model": MODEL, "prompt": "q\n", "max_tokens": 10**12}),
    ("/v1/completions", b'{"model": "%s", "prompt": "q\\n", "flops_budget": 1e400}' % MODEL.encode()),
    ("/v1/completions", {"model": MODEL, "prompt": "q\n", "strategy": "../../etc/passwd"}),
    ("/v1/completions", {"model": MODEL, "prompt": "q\n", "strategy": "beam_search",
                         "strategy_params": {"beam_width": "wide"}}),
    ("/v1/completions", {"model": MODEL, "prompt": "q\n", "logit_bias": {"99999999": 5}}),
    ("/v1/completions", {"model": MODEL, "prompt": "q\n", "stop": [""]}),
    ("/v1/completions", {"model": "../secret", "prompt": "q\n"}),
    ("/v1/completions", {"model": MODEL, "prompt": "1+" * 30_000}),
    ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "wizard", "content": "hi"}]}),
    ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": [{"type": "x"}]}]}),
    ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user"}]}),
    ("/v1/chat/completions", {"model": MODEL, "messages": "hello"}),
    ("/v1/responses", {"model": MODEL, "input": [{"type": "function_call_output", "output": "1"}]}),
    ("/v1/responses", {"model": MODEL, "input": "q", "previous_response_id": "resp_1"}),
    ("/v1/nowhere", {"model": MODEL}),
]


def assert_clean(response: httpx.Response) -> None:
    assert 400 <= response.status_code < 600
    error = response.json()["error"]
    assert error["message"] and error["type"], error
    assert not INTERNALS.search(response.text), response.text


def test_the_hostile_corpus_gets_clean_errors(client: httpx.Client) -> None:
    for path, body in HOSTILE:
        if isinstance(body, bytes):
            response = client.post(path, content=body, headers={"content-type": "application/json"})
        else:
            response = client.post(path, json=body)
        assert 400 <= response.status_code < 500, (path, body, response.text)
        assert_clean(response)


def test_a_thousand_made_up_fields_are_each_a_clean_400(client: httpx.Client) -> None:
    rng = random.Random(34)
    for _ in range(1000):
        name = "".join(rng.choices(string.ascii_letters + "_", k=rng.randint(1, 24)))
        if name in CompletionRequest.model_fields:
            continue
        value = rng.choice([1, -1.5, "x" * rng.randint(0, 64), None, [1, 2], {"a": 1}, True])
        response = client.post("/v1/completions", json={"model": MODEL, "prompt": "q\n", name: value})
        assert response.status_code == 400, (name, response.text)
        assert_clean(response)


def test_backend_failures_keep_their_details_to_the_log(backends: Backends) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    for broken in ({"generator_url": dead}, {"prm_url": dead}):
        settings = service_settings(backends).model_copy(update=broken)
        with LiveService(settings) as live, httpx.Client(base_url=live.url, timeout=60) as http:
            for strategy in ("best_of_n", "majority"):
                response = http.post("/v1/completions", json={
                    "model": MODEL, "prompt": "question: 1+1\n", "flops_budget": 2e10, "strategy": strategy})
                assert response.status_code in (200, 503)
                if response.status_code == 503:
                    assert_clean(response)
                    assert response.headers["retry-after"]
    # vLLM refusing what it was sent (a token id outside the vocabulary): its own text stays out
    with LiveService(service_settings(backends)) as live:
        response = httpx.post(f"{live.url}/v1/completions", timeout=60, json={
            "model": MODEL, "prompt": "q\n", "logit_bias": {"99999": 1}, "strategy": "majority"})
        assert response.status_code == 400 and response.json()["error"]["code"] == "backend_rejected"
        assert_clean(response)
