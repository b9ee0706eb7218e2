"""Several replicas per role: which replica a call goes to (rendezvous hashing of the request id),
and, end to end, two real embedded generator replicas behind the service: every call of a request
on one replica, a replica killed under requests (new requests all answered by the other, the killed
one's in-flight request a clean 503 or its answer), ejected, and back in service once it returns."""

from __future__ import annotations

import concurrent.futures
import os
import re
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest

from tests.conftest import Backends, LiveService
from ttc_serve.app import wiring
from ttc_serve.app.settings import Settings
from ttc_serve.app.wiring import embedded_server_specs
from ttc_serve.models.launcher import VllmServer, running
from ttc_serve.models.replicas import Replica, ReplicaSet, rendezvous

MODEL = Settings().model_name
URLS = [f"http://10.0.0.{i}:8000" for i in range(1, 5)]


def replica_set(routing: str = "affinity") -> ReplicaSet:
    return ReplicaSet([Replica(url, headers={}, timeout=httpx.Timeout(1.0), max_connections=8,
                               keepalive_expiry_s=1.0) for url in URLS], routing)  # type: ignore[arg-type]


def test_affinity_sends_a_request_to_one_replica_and_spreads_requests() -> None:
    replicas = replica_set()
    firsts = Counter(replicas.order(f"req-{i}")[0].url for i in range(2000))
    assert set(firsts) == set(URLS)
    assert all(400 < n < 600 for n in firsts.values()), firsts  # about 500 each
    assert all(replicas.order("req-7")[0] is replicas.order("req-7")[0] for _ in range(10))


def test_an_ejected_replica_moves_only_its_own_requests() -> None:
    replicas = replica_set()
    before = {f"req-{i}": replicas.order(f"req-{i}")[0].url for i in range(1000)}
    replicas.replicas[1].set_available(False)
    after = {key: replicas.order(key)[0].url for key in before}
    moved = {key for key in before if before[key] != after[key]}
    assert moved == {key for key, url in before.items() if url == URLS[1]}
    assert URLS[1] not in after.values()
    replicas.replicas[1].set_available(True)  # back: its requests return to it
    assert {key: replicas.order(key)[0].url for key in before} == before


def test_round_robin_turns_call_by_call_and_nothing_is_up_gives_no_order() -> None:
    replicas = replica_set("round_robin")
    assert [replicas.order("same")[0].url for _ in range(8)] == URLS * 2
    for replica in replicas.replicas:
        replica.set_available(False)
    assert replicas.order("any") == [] and not replicas.available


def test_comma_separated_replica_urls_and_one_way_per_role(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TTC_GENERATOR_URLS", "http://a:8000, http://b:8000")
    monkeypatch.setenv("TTC_PRM_URL", "http://p:8000")
    assert Settings().backend_urls() == (["http://a:8000", "http://b:8000"], ["http://p:8000"])
    monkeypatch.setenv("TTC_GENERATOR_URL", "http://c:8000")
    with pytest.raises(ValueError, match="not both"):
        Settings()


def test_every_entry_point_gets_the_replica_lists() -> None:
    """serve (the settings) and calibrate/bench (--generator-url a,b) build one client per role over
    all its replicas; offline runs size their concurrency by the widest role."""
    settings = Settings(generator_urls=URLS[:2], prm_url=URLS[2])
    pair = wiring.backend_pair(settings, *settings.backend_urls())
    assert [r.url for r in pair.generator.replicas.replicas] == URLS[:2]
    assert [r.url for r in pair.verifier.replicas.replicas] == URLS[2:3]
    assert pair.width == 2
    assert wiring._split(f" {URLS[0]},{URLS[1]} ,") == URLS[:2]


# --- two real generator replicas -------------------------------------------------------------


@pytest.fixture(scope="module")
def second_generator(backends: Backends) -> Iterator[VllmServer]:
    spec = embedded_server_specs(Settings())[0]
    with running(replace(spec, cpu_bind="1"), timeout_s=300) as (server,):
        yield server


def ask(url: str, request_id: str, strategy: str = "majority",
        budget: float = 1e10) -> httpx.Response:
    return httpx.post(f"{url}/v1/completions", timeout=120, headers={"X-Request-Id": request_id},
                      json={"model": MODEL, "prompt": "question: 4+5\n", "flops_budget": budget,
                            "strategy": strategy})


def served_by(server: VllmServer, request_id: str) -> bool:
    """Whether the server's log lists a call of this request (vLLM logs each request's id)."""
    return re.search(rf"\b{re.escape(request_id)}-\d+\b", server.log_tail(10**8)) is not None


def ids_for(url: str, urls: list[str], count: int, prefix: str) -> list[str]:
    """Request ids whose calls hash to ``url`` first."""
    found, i = [], 0
    while len(found) < count:
        key = f"{prefix}-{i}"
        if rendezvous(key, urls)[0] == url:
            found.append(key)
        i += 1
    return found


def replicas_serving(url: str) -> int:
    return int(httpx.get(f"{url}/readyz", timeout=10).json()["replicas"]["generator"]["serving"])


def test_two_generator_replicas_affinity_failover_and_return(
        backends: Backends, second_generator: VllmServer) -> None:
    first, second = backends.generator, second_generator
    urls = [first.base_url, second.base_url]
    settings = Settings(generator_urls=urls, prm_url=backends.prm.base_url, health_interval_s=0.5)
    with LiveService(settings) as live:
        assert replicas_serving(live.url) == 2
        # every call of a request on the replica its id hashes to, and only there
        for server, other in ((first, second), (second, first)):
            for request_id in ids_for(server.base_url, urls, 2, f"affinity-{server.port}"):
                response = ask(live.url, request_id, "beam_search", 2e10)
                assert response.status_code == 200, response.text
                assert served_by(server, request_id) and not served_by(other, request_id)

        # the second replica killed while a request on it is in flight
        assert second.process is not None
        [doomed] = ids_for(second.base_url, urls, 1, "doomed")
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            in_flight = pool.submit(ask, live.url, doomed, "beam_search", 1e12)
            time.sleep(2.0)
            os.killpg(second.process.pid, signal.SIGKILL)
            killed_at = time.monotonic()
            fresh = ids_for(second.base_url, urls, 4, "after") + ids_for(first.base_url, urls, 4, "after")
            answers = list(pool.map(ask, [live.url] * len(fresh), fresh))
            cut = in_flight.result(timeout=130)
        assert [r.status_code for r in answers] == [200] * len(fresh), [r.text for r in answers]
        assert all(served_by(first, request_id) for request_id in fresh)
        assert cut.status_code in (200, 503), cut.text
        if cut.status_code == 503:
            assert cut.headers["retry-after"] and cut.json()["error"]["code"] == "backend_unavailable"
            assert time.monotonic() - killed_at < 30
        deadline = time.monotonic() + 10
        while replicas_serving(live.url) != 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert replicas_serving(live.url) == 1
        assert httpx.get(f"{live.url}/readyz").status_code == 200  # one replica is enough
        metrics = httpx.get(f"{live.url}/metrics").text
        assert f'ttc_backend_up{{backend="generator",replica="{second.base_url[7:]}"}} 0.0' in metrics

        # back: the same address serves again, and its requests return to it
        second.stop()
        second.start(timeout_s=300)
        deadline = time.monotonic() + 30
        while replicas_serving(live.url) != 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert replicas_serving(live.url) == 2
        [returning] = ids_for(second.base_url, urls, 1, "returning")
        assert ask(live.url, returning).status_code == 200
        assert served_by(second, returning) and not served_by(first, returning)
