"""Streaming for real: progress while the search works, then the answer; a disconnect cancels the
backends at once; failures after the start arrive as error events."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Backends, LiveService, service_settings
from ttc_serve.app.settings import Settings

MODEL = Settings().model_name
LONG = "question: 912+388-475+63-201+77\n"


def events(response: httpx.Response) -> Iterator[tuple[float, Any]]:
    """(arrival time, parsed data) of each SSE data line; "[DONE]" as the string."""
    for line in response.iter_lines():
        if line.startswith("data: "):
            payload = line[len("data: "):]
            yield time.monotonic(), payload if payload == "[DONE]" else json.loads(payload)


def prometheus(url: str, name: str, **labels: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def test_progress_arrives_while_a_beam_search_runs(service: LiveService) -> None:
    body = {"model": MODEL, "prompt": LONG, "stream": True, "stream_options": {"include_usage": True},
            "flops_budget": 3e11, "strategy": "beam_search", "strategy_params": {"n": 8, "beam_width": 4}}
    with httpx.stream("POST", f"{service.url}/v1/completions", json=body, timeout=120) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        received = list(events(response))
    assert received[-1][1] == "[DONE]"
    chunks = [(t, d) for t, d in received[:-1]]
    rounds = [(t, d["progress"]) for t, d in chunks
              if "progress" in d and d["progress"]["stage"] == "beam_search" and d["progress"]["round"] >= 1]
    content_at = next(t for t, d in chunks if d["choices"] and d["choices"][0]["text"])
    assert len(rounds) >= 3, rounds
    assert rounds[0][0] < rounds[-1][0] < content_at  # sent as each round ended, not all at the end
    flops = [d["progress"]["flops_used"] for _, d in chunks if "progress" in d]
    assert flops == sorted(flops)
    compute = chunks[-1][1]["compute"]
    assert chunks[-1][1]["usage"]["completion_tokens"] == compute["generated_tokens"]
    assert flops[-1] == compute["flops_used"] <= compute["flops_budget"]
    assert compute["params"]["rounds"] == len(rounds)


def test_chat_stream_shape_and_n(service: LiveService) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "question: 912+388-475+63"}],
            "stream": True, "n": 2, "temperature": 1.2, "seed": 3, "flops_budget": 4e10,
            "strategy": "majority", "strategy_params": {"n": 16}}
    with httpx.stream("POST", f"{service.url}/v1/chat/completions", json=body, timeout=120) as response:
        chunks = [d for _, d in events(response)]
    assert chunks[-1] == "[DONE]"
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    texts: dict[int, str] = {}
    finished: dict[int, str] = {}
    for chunk in chunks[1:-1]:
        assert chunk["object"] == "chat.completion.chunk" and chunk["id"] == chunks[0]["id"]
        for choice in chunk["choices"]:
            texts[choice["index"]] = texts.get(choice["index"], "") + (choice["delta"].get("content") or "")
            if choice["finish_reason"]:
                finished[choice["index"]] = choice["finish_reason"]
    assert sorted(texts) == sorted(finished) == [0, 1]
    assert texts[0] != texts[1]
    assert "compute" in chunks[-2]  # no usage chunk asked for: compute rides on the last chunk


def test_a_refusal_before_the_start_is_a_plain_http_error(client: httpx.Client) -> None:
    response = client.post("/v1/chat/completions", json={
        "model": MODEL, "messages": [{"role": "user", "content": "question: 1+1"}], "stream": True,
        "flops_budget": 1e3})
    assert response.status_code == 400 and response.json()["error"]["param"] == "flops_budget"


def test_a_disconnect_mid_stream_cancels_the_backends(service: LiveService, backends: Backends) -> None:
    cancelled_before = prometheus(service.url, "ttc_requests_total", status="499")
    body = {"model": MODEL, "prompt": LONG, "stream": True, "flops_budget": 1e13,
            "strategy": "beam_search", "strategy_params": {"n": 64, "beam_width": 4}}
    with httpx.stream("POST", f"{service.url}/v1/completions", json=body, timeout=120) as response:
        for _, chunk in events(response):
            progress = chunk.get("progress") if isinstance(chunk, dict) else None
            if progress and progress["round"] >= 1:
                break  # leave with the search still running
    left = time.monotonic()
    servers = (backends.generator, backends.prm)
    while time.monotonic() < left + 10:
        busy = sum(prometheus(s.base_url, n) for s in servers
                   for n in ("vllm:num_requests_running", "vllm:num_requests_waiting"))
        if busy == 0 and prometheus(service.url, "ttc_requests_in_flight") == 0:
            break
        time.sleep(0.05)
    assert busy == 0 and time.monotonic() - left < 2.0, "the backends were still busy 2 s after"
    assert prometheus(service.url, "ttc_requests_in_flight") == 0
    assert prometheus(service.url, "ttc_requests_total", status="499") == cancelled_before + 1


@pytest.fixture(scope="module")
def impatient(backends: Backends) -> Iterator[LiveService]:
    with LiveService(service_settings(backends, request_timeout_s=1.5)) as live:
        yield live


def test_a_failure_after_the_start_is_an_error_event(impatient: LiveService) -> None:
    body = {"model": MODEL, "prompt": LONG, "stream": True, "flops_budget": 1e13,
            "strategy": "beam_search", "strategy_params": {"n": 256, "beam_width": 4}}
    with httpx.stream("POST", f"{impatient.url}/v1/completions", json=body, timeout=120) as response:
        assert response.status_code == 200
        chunks = [d for _, d in events(response)]
    assert chunks[-1] == "[DONE]"
    assert chunks[-2]["error"]["code"] == "deadline_exceeded" and chunks[-2]["error"]["message"]
    assert prometheus(impatient.url, "ttc_requests_in_flight") == 0
