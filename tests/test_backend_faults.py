"""A backend that stops answering: once the health monitor has seen it fail, requests that need it
fail at once (503, Retry-After), those already waiting on it included; requests that do not need it
go on; and all recover by themselves when it answers again. Faults are real: the PRM's vLLM server
is stopped with SIGSTOP and resumed with SIGCONT."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Backends, LiveService, service_settings
from ttc_serve.app.settings import Settings

MODEL = Settings().model_name


def ask(url: str, strategy: str, budget: float = 2e10) -> tuple[int, float, httpx.Response]:
    started = time.monotonic()
    response = httpx.post(f"{url}/v1/completions", timeout=120, json={
        "model": MODEL, "prompt": "question: 4+5\n", "flops_budget": budget, "strategy": strategy})
    return response.status_code, time.monotonic() - started, response


@pytest.fixture()
def watched(backends: Backends) -> Iterator[LiveService]:
    with LiveService(service_settings(backends, health_interval_s=0.5)) as live:
        yield live


def test_a_frozen_prm_fails_fast_and_recovers(watched: LiveService, backends: Backends) -> None:
    assert backends.prm.process is not None
    pid = backends.prm.process.pid
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        # a long search, waiting on the PRM when it freezes
        waiting = pool.submit(ask, watched.url, "best_of_n", 1e12)
        time.sleep(1.0)
        os.kill(pid, signal.SIGSTOP)
        try:
            frozen_at = time.monotonic()
            status, _, response = waiting.result(timeout=60)
            assert status == 503 and response.headers["retry-after"], response.text
            assert time.monotonic() - frozen_at < 10  # the monitor's two misses, not the 120 s timeout
            assert httpx.get(f"{watched.url}/readyz").status_code == 503
            status, seconds, response = ask(watched.url, "best_of_n")
            assert status == 503 and seconds < 1.0, (status, seconds)
            assert response.json()["error"]["code"] == "backend_unavailable"
            status, _, _ = ask(watched.url, "majority")  # needs the generator only
            assert status == 200
            assert httpx.get(f"{watched.url}/healthz").status_code == 200  # waiting is the remedy
        finally:
            os.kill(pid, signal.SIGCONT)
    deadline = time.monotonic() + 30
    while httpx.get(f"{watched.url}/readyz").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    status, _, response = ask(watched.url, "best_of_n")
    assert status == 200, response.text
