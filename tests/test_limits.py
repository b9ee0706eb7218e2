"""Bounds on what one request can cause: its size, and the work a huge budget buys."""

from __future__ import annotations

import concurrent.futures
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import psutil
import pytest

from tests.conftest import Backends, LiveService, service_settings
from ttc_serve.app.settings import Settings
from ttc_serve.router.strategies import STRATEGIES

MODEL = Settings().model_name


def rss(url: str) -> int:
    """Resident memory of the vLLM API server listening at ``url``."""
    port = int(url.rsplit(":", 1)[1])
    for proc in psutil.process_iter(["cmdline"]):
        if "--port" in (cmd := proc.info["cmdline"] or []) and cmd[cmd.index("--port") + 1] == str(port):
            return int(proc.memory_info().rss)
    raise LookupError(url)


def test_a_huge_body_is_refused_before_any_work(service: LiveService, backends: Backends) -> None:
    before = rss(backends.generator.base_url)
    prompt = "question: " + "1+" * 8_000_000 + "1\n"  # 16 MB
    started = time.monotonic()
    response = httpx.post(f"{service.url}/v1/completions", timeout=30,
                          json={"model": MODEL, "prompt": prompt})
    assert response.status_code == 413 and time.monotonic() - started < 1.0
    assert response.json()["error"]["code"] == "request_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"model": "%s", "prompt": "' % MODEL.encode()
        for _ in range(80):
            yield b"1+" * 65_536
        yield b'1"}'

    chunked = httpx.post(f"{service.url}/v1/completions", content=chunks(), timeout=30,
                         headers={"content-type": "application/json"})
    assert chunked.status_code == 413
    assert abs(rss(backends.generator.base_url) - before) < 50 * 2**20


def test_a_long_prompt_is_refused_before_it_is_tokenized(client: httpx.Client, backends: Backends) -> None:
    before = rss(backends.generator.base_url)
    started = time.monotonic()
    response = client.post("/v1/completions", json={"model": MODEL, "prompt": "1+" * 1_000_000})
    assert response.status_code == 400 and time.monotonic() - started < 1.0
    assert response.json()["error"]["code"] == "context_length_exceeded"
    assert abs(rss(backends.generator.base_url) - before) < 50 * 2**20


@pytest.fixture(scope="module")
def bounded(backends: Backends) -> Iterator[LiveService]:
    with LiveService(service_settings(backends, request_timeout_s=20.0)) as live:
        yield live


def test_a_budget_of_1e18_freezes_nothing(bounded: LiveService) -> None:
    """Every strategy at once with the largest budget the deployment allows: each answers by the
    deadline (a budget buys at most max_samples_per_call candidates), and /healthz stays quick."""
    latencies: list[float] = []
    done = threading.Event()

    def probe() -> None:
        with httpx.Client(base_url=bounded.url, timeout=30) as http:
            while not done.is_set():
                started = time.monotonic()
                assert http.get("/healthz").status_code == 200
                latencies.append(time.monotonic() - started)
                time.sleep(0.05)

    def ask(strategy: str) -> tuple[int, float, dict[str, object]]:
        started = time.monotonic()
        response = httpx.post(f"{bounded.url}/v1/completions", timeout=120, json={
            "model": MODEL, "prompt": "question: 37+5-12\n", "flops_budget": 1e18, "strategy": strategy})
        return response.status_code, time.monotonic() - started, response.json()

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        with concurrent.futures.ThreadPoolExecutor(len(STRATEGIES)) as pool:
            results = dict(zip(STRATEGIES, pool.map(ask, STRATEGIES), strict=True))
    finally:
        done.set()
        prober.join()
    for strategy, (status, seconds, body) in results.items():
        # 504 at the deadline; 503 (Retry-After) when a swamped backend took over 5 s to connect
        assert status in (200, 503, 504), (strategy, status, body)
        assert seconds < 20.0 + 5.0, (strategy, seconds)
    # Answered throughout, never frozen. On these 2 cores the router shares the CPU with both busy
    # vLLM servers (and this test's threads its GIL): seconds, not the milliseconds of a router on
    # its own core.
    assert max(latencies) < 3.0, sorted(latencies)[-5:]


def test_a_huge_budget_buys_at_most_the_cap(client: httpx.Client) -> None:
    body = client.post("/v1/completions", json={
        "model": MODEL, "prompt": "question: 37+5-12\n", "flops_budget": 1e18, "strategy": "beam_search",
        "strategy_params": {"max_rounds": 1}}).json()
    params = body["compute"]["params"]
    assert params["n"] == Settings().max_samples_per_call and params["n_capped"] is True


def test_oversized_headers_are_cut(service: LiveService) -> None:
    try:
        padded = {"X-Padding": "a" * 2**20}
        status = httpx.get(f"{service.url}/v1/models", headers=padded, timeout=30).status_code
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):  # or simply hang up
        status = 0
    assert status in (0, 400, 431)
    assert httpx.get(f"{service.url}/healthz", timeout=5).status_code == 200


@pytest.fixture(scope="module")
def strict(backends: Backends) -> Iterator[LiveService]:
    with LiveService(service_settings(backends, body_timeout_s=1.0, header_timeout_s=1.0)) as live:
        yield live


def test_a_stalled_body_is_cut(strict: LiveService) -> None:
    head = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n")
    with socket.create_connection(("127.0.0.1", strict.port), timeout=30) as sock:
        started = time.monotonic()
        sock.sendall(head + b'{"model": "ttc-arith", ')  # and then nothing
        reply = sock.recv(65536).decode(errors="replace")
    assert reply.startswith("HTTP/1.1 408") and time.monotonic() - started < 5, reply[:200]
    assert httpx.get(f"{strict.url}/healthz").status_code == 200


@pytest.mark.parametrize("sent", [b"", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Ty"])
def test_a_stalled_request_head_is_cut(strict: LiveService, sent: bytes) -> None:
    """Nothing, or half a head and then nothing: the connection is closed at the head deadline."""
    with socket.create_connection(("127.0.0.1", strict.port), timeout=30) as sock:
        started = time.monotonic()
        sock.sendall(sent)
        assert sock.recv(65536) == b""  # closed by the server
        assert time.monotonic() - started < 4
    # a request sent in time, and a second one on the same connection, are served as usual
    with httpx.Client(base_url=strict.url) as client:
        assert client.get("/healthz").status_code == 200
        time.sleep(0.5)
        assert client.get("/v1/models").status_code == 200


@pytest.fixture(scope="module")
def single(backends: Backends) -> Iterator[LiveService]:
    with LiveService(service_settings(backends, max_in_flight=1)) as live:
        yield live


def test_overload_is_refused_before_the_body_is_read(single: LiveService) -> None:
    """At the in-flight bound a completion request gets its 429 from its head alone: the body it
    announced is never awaited."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        busy = pool.submit(httpx.post, f"{single.url}/v1/completions", timeout=120, json={
            "model": MODEL, "prompt": "question: 37+5-12\n", "flops_budget": 1e11,
            "strategy": "beam_search"})
        deadline = time.monotonic() + 30
        while "ttc_requests_in_flight 1.0" not in httpx.get(f"{single.url}/metrics").text:
            assert time.monotonic() < deadline and not busy.done()
            time.sleep(0.05)
        head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100000\r\n\r\n")
        with socket.create_connection(("127.0.0.1", single.port), timeout=30) as sock:
            started = time.monotonic()
            sock.sendall(head)  # and no body
            reply = sock.recv(65536).decode(errors="replace")
        assert reply.startswith("HTTP/1.1 429") and time.monotonic() - started < 1.0, reply[:300]
        assert "retry-after: 1" in reply.lower() and '"code":"overloaded"' in reply
        assert busy.result().status_code == 200
