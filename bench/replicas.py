"""Two generator replicas behind the service (the embedded models on vLLM CPU; one PRM).

1. **Affinity against round-robin.** The same beam-search requests, ``CONCURRENCY`` at a time, with
   ``TTC_REPLICA_ROUTING=affinity`` (each request's calls on one replica) and ``round_robin`` (call
   by call). The prefix-cache hit rate is vLLM's own (``vllm:prefix_cache_hits`` over
   ``vllm:prefix_cache_queries``, summed over both replicas, the difference over the run).
2. **A replica killed under load.** With affinity, requests back to back from ``CONCURRENCY``
   clients; ``KILL_AFTER_S`` in, one replica's process group gets SIGKILL; it is started again on
   the same port ``RESTART_AFTER_S`` later. Every answer's status and time is recorded: requests
   sent after the kill must all succeed, none may hang, and the replica must be back in service.

Writes ``bench/results/replicas.json``. ``make replicas``; about 10 minutes on two cores."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import random
import re
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from bench.service import spawn_service
from ttc_serve.app.settings import Settings
from ttc_serve.app.wiring import embedded_server_specs
from ttc_serve.models.launcher import VllmServer, free_port, running

RESULTS = Path(__file__).resolve().parent / "results" / "replicas.json"
MODEL = Settings().model_name
CONCURRENCY = 4
REQUESTS = int(os.environ.get("TTC_REPLICA_REQUESTS", "24"))
BUDGET = 6.4e10  # several beam-search rounds on the embedded models
BLOCK_SIZE = 32
KILL_AFTER_S, RESTART_AFTER_S, LOAD_S = 20.0, 10.0, 240.0
# Distinct questions, so that a request finds in the cache only what its own earlier rounds left
# there: the same question asked twice shares its steps across requests on whichever replica.
_RNG = random.Random(7)
QUESTIONS = [f"question: {_RNG.randint(10, 99)}+{_RNG.randint(10, 99)}-{_RNG.randint(1, 9)}"
             f"+{_RNG.randint(10, 99)}-{_RNG.randint(1, 9)}\n" for _ in range(1000)]


def prefix_cache(servers: list[VllmServer]) -> tuple[float, float]:
    """vLLM's prefix-cache counters (queries, hits), summed over the servers."""
    queries = hits = 0.0
    for server in servers:
        text = httpx.get(f"{server.base_url}/metrics", timeout=10).text
        queries += sum(float(v) for v in re.findall(r"^vllm:prefix_cache_queries_total\{[^}]*\} (\S+)$",
                                                    text, re.M))
        hits += sum(float(v) for v in re.findall(r"^vllm:prefix_cache_hits_total\{[^}]*\} (\S+)$",
                                                 text, re.M))
    return queries, hits


@contextlib.contextmanager
def service(generators: list[VllmServer], prm: VllmServer, routing: str) -> Any:
    port = free_port()
    env = dict(os.environ, TTC_GENERATOR_URLS=",".join(g.base_url for g in generators),
               TTC_PRM_URL=prm.base_url, TTC_PORT=str(port), TTC_REPLICA_ROUTING=routing,
               TTC_HEALTH_INTERVAL_S="0.5")
    process = spawn_service(env)
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=60)


def ask(url: str, i: int) -> dict[str, Any]:
    started = time.monotonic()
    try:
        response = httpx.post(f"{url}/v1/completions", timeout=150, json={
            "model": MODEL, "prompt": QUESTIONS[i % len(QUESTIONS)], "flops_budget": BUDGET,
            "strategy": "beam_search", "seed": i})
        status, retry = response.status_code, response.headers.get("retry-after")
    except httpx.HTTPError:
        status, retry = 0, None
    return {"sent_s": started, "seconds": round(time.monotonic() - started, 3), "status": status,
            "retry_after": retry}


def affinity_against_round_robin(generators: list[VllmServer], prm: VllmServer) -> dict[str, Any]:
    out = {}
    for offset, routing in enumerate(("affinity", "round_robin")):
        with service(generators, prm, routing) as url:
            before = prefix_cache(generators)
            started = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(CONCURRENCY) as pool:
                # questions neither run has asked (the other run's would be in the caches)
                first = offset * REQUESTS
                answers = list(pool.map(lambda i: ask(url, i), range(first, first + REQUESTS)))
            seconds = time.monotonic() - started
            after = prefix_cache(generators)
        queries, hits = after[0] - before[0], after[1] - before[1]
        out[routing] = {"requests": REQUESTS, "ok": sum(a["status"] == 200 for a in answers),
                        "prefix_cache_queries": queries, "prefix_cache_hits": hits,
                        "hit_rate": round(hits / queries, 4) if queries else None,
                        "seconds": round(seconds, 1)}
        print(routing, out[routing], flush=True)
    return out


def killed_under_load(generators: list[VllmServer], prm: VllmServer) -> dict[str, Any]:
    victim = generators[1]
    records: list[dict[str, Any]] = []
    events: dict[str, float] = {}
    with service(generators, prm, "affinity") as url:
        stop_at = time.monotonic() + LOAD_S
        counter = iter(range(2 * REQUESTS, 10**6))
        lock = threading.Lock()

        def client() -> None:
            while time.monotonic() < stop_at:
                with lock:
                    i = next(counter)
                records.append(ask(url, i))

        def fault() -> None:
            time.sleep(KILL_AFTER_S)
            assert victim.process is not None
            os.killpg(victim.process.pid, signal.SIGKILL)
            events["killed"] = time.monotonic()
            time.sleep(RESTART_AFTER_S)
            victim.stop()
            victim.start(timeout_s=300)
            events["restarted"] = time.monotonic()
            while httpx.get(f"{url}/readyz", timeout=5).json()["replicas"]["generator"]["serving"] < 2:
                time.sleep(0.2)
            events["back_in_service"] = time.monotonic()

        threads = [threading.Thread(target=client) for _ in range(CONCURRENCY)]
        threads.append(threading.Thread(target=fault))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        victim_log = victim.log_tail(10**8)
    killed = events["killed"]
    after = [r for r in records if r["sent_s"] > killed]
    in_flight = [r for r in records if r["sent_s"] <= killed < r["sent_s"] + r["seconds"]]
    by_status: dict[str, int] = {}
    for r in records:
        by_status[str(r["status"])] = by_status.get(str(r["status"]), 0) + 1
    return {
        "requests": len(records), "by_status": by_status,
        "hung": sum(r["status"] == 0 for r in records),
        "sent_after_kill": len(after), "sent_after_kill_ok": sum(r["status"] == 200 for r in after),
        "in_flight_at_kill": {str(s): sum(r["status"] == s for r in in_flight)
                              for s in sorted({r["status"] for r in in_flight})},
        "503_without_retry_after": sum(r["status"] == 503 and not r["retry_after"] for r in records),
        "back_in_service_s_after_restart": round(events["back_in_service"] - events["restarted"], 1),
        "restart_took_s": round(events["restarted"] - killed - RESTART_AFTER_S, 1),
        "served_after_return": "Received request" in victim_log,
    }


def main() -> None:
    settings = Settings()
    generator, prm = embedded_server_specs(settings)
    # vLLM caches prefixes in whole KV blocks, 128 tokens by default on CPU: longer than most of
    # these searches' prompts, so nothing would ever hit. 32-token blocks let it show.
    generator = replace(generator, extra_args=(*generator.extra_args, "--block-size", str(BLOCK_SIZE)))
    specs = (generator, replace(generator, cpu_bind="1"), prm)
    with running(*specs, timeout_s=600) as (first, second, verifier):
        results: dict[str, Any] = {
                   "routing": affinity_against_round_robin([first, second], verifier),
                   "killed_replica": killed_under_load([first, second], verifier)}
    results["setup"] = (f"2 generator replicas (--block-size {BLOCK_SIZE}) + 1 PRM (embedded models, vLLM "
                        f"CPU, 2 cores); beam_search at {BUDGET:.1e} FLOPs, {CONCURRENCY} requests at a time")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
