"""Faults of external backends, injected between the service and the real embedded vLLM servers by
``bench/fault_proxy.py``: a backend gone slow, one answering 500, one closing every connection —
each for the generator and for the PRM, ``TTC_FAULT_RUNS`` times. Per run: the requests in flight
when the fault strikes are all answered (200, or 503/504 with Retry-After) within the deadline;
once the health monitor has seen the fault, new requests fail in under a second (503 with
Retry-After); when the backend is healthy again requests succeed, and the in-flight gauge is 0.
Writes ``bench/results/injected_faults.json``. Part of ``make faults``."""

from __future__ import annotations

import concurrent.futures
import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.fault_proxy import FaultProxy, Mode
from bench.faults import DEADLINE_S, IN_FLIGHT, ask, gauge, ready
from bench.service import spawn_service
from ttc_serve.app.settings import Settings
from ttc_serve.app.wiring import embedded_server_specs
from ttc_serve.models.launcher import free_port, running

RESULTS = Path(__file__).resolve().parent / "results" / "injected_faults.json"
RUNS = int(os.environ.get("TTC_FAULT_RUNS", "20"))
FAULTS: tuple[Mode, ...] = ("slow", "error", "close")
NEW_REQUESTS = 3  # sent while the fault holds, once it is seen


def one_run(url: str, proxy: FaultProxy, fault: Mode, role: str) -> dict[str, Any]:
    with concurrent.futures.ThreadPoolExecutor(IN_FLIGHT) as pool:
        asked = [pool.submit(ask, url, i) for i in range(IN_FLIGHT)]
        time.sleep(1.0)
        struck = time.monotonic()
        proxy.set(fault)
        # until the health monitor's verdict is in (ttc_backend_up), which /readyz may show sooner
        while gauge(url, "ttc_backend_up") == 2 and time.monotonic() - struck < 30:
            time.sleep(0.1)
        seen_s = time.monotonic() - struck
        fresh = [ask(url, 100 + i) for i in range(NEW_REQUESTS)]
        answers = [a.result() for a in asked]
    proxy.set("pass")
    healed = time.monotonic()
    while not ready(url) and time.monotonic() - healed < 60:
        time.sleep(0.2)
    back = ask(url, 99)
    return {"fault": f"{fault}:{role}", "answers": answers, "seen_after_s": round(seen_s, 2),
            "while_down": fresh, "serving_again_after_s": round(time.monotonic() - healed, 2),
            "request_after": back["status"], "in_flight_after": gauge(url, "ttc_requests_in_flight")}


def main() -> None:
    with running(*embedded_server_specs(Settings()), timeout_s=600) as (generator, prm):
        proxies = {"generator": FaultProxy("127.0.0.1", generator.port).start(),
                   "prm": FaultProxy("127.0.0.1", prm.port).start()}
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = dict(os.environ, TTC_PORT=str(port), TTC_REQUEST_TIMEOUT_S=str(DEADLINE_S),
                   TTC_HEALTH_INTERVAL_S="0.5", TTC_GENERATOR_URL=proxies["generator"].url,
                   TTC_PRM_URL=proxies["prm"].url)
        service = spawn_service(env)
        runs: list[dict[str, Any]] = []
        try:
            while not ready(url):
                assert service.poll() is None, "the service did not start"
                time.sleep(1)
            for fault in FAULTS:
                for role, proxy in proxies.items():
                    for _ in range(RUNS):
                        runs.append(one_run(url, proxy, fault, role))
                        print(json.dumps(runs[-1]), flush=True)
        finally:
            service.terminate()
            service.wait(timeout=60)
            for proxy in proxies.values():
                proxy.stop()
    answers = [a for r in runs for a in r["answers"]]
    fresh = [a for r in runs for a in r["while_down"]]
    summary = {
        "runs_per_fault": RUNS, "deadline_s": DEADLINE_S, "in_flight_per_run": IN_FLIGHT,
        "in_flight_answers": len(answers),
        "in_flight_by_status": dict(Counter(str(a["status"]) for a in answers)),
        "hung_or_lost": sum(1 for a in answers + fresh if a["status"] == 0 or a["seconds"] > DEADLINE_S + 5),
        "5xx_without_retry_after": sum(1 for a in answers + fresh
                                       if a["status"] in (503, 504) and not a["retry_after"]),
        "error_bodies_showing_internals": sum(1 for a in answers + fresh if a["body_shows_internals"]),
        "while_down_by_status": dict(Counter(str(a["status"]) for a in fresh)),
        "while_down_max_s": max(a["seconds"] for a in fresh),
        "seen_after_s_max": max(r["seen_after_s"] for r in runs),
        "in_flight_not_zero_after": sum(1 for r in runs if r["in_flight_after"] != 0),
        "not_serving_after": sum(1 for r in runs if r["request_after"] != 200),
        "serving_again_after_s_max": max(r["serving_again_after_s"] for r in runs)}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"summary": summary, "runs": runs}, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
