"""Faults injected into the real embedded servers under ``ttc-serve serve``, while requests run:
SIGSTOP (then SIGCONT after ``FROZEN_S``) and SIGKILL of the generator's and of the PRM's vLLM API
server, each ``TTC_FAULT_RUNS`` times (20 for #34's acceptance). Per run: every in-flight request
is answered (200, or 503/504 with Retry-After) within the deadline, none hangs, the in-flight gauge
returns to 0, and a killed server serves again (its time to come back is recorded). At the end the
service is stopped and no process it started may be left. Writes ``bench/results/faults.json``.
``make faults``; ~2 minutes per SIGKILL run on two cores."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import re
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

from bench.service import spawn_service
from ttc_serve.models.launcher import free_port

RESULTS = Path(__file__).resolve().parent / "results" / "faults.json"
# What no error body may show a client: addresses, paths, exception classes, a backend's own words
# (tests/test_error_bodies.py scans the hostile corpus with it; the fault benches every error body).
INTERNALS = re.compile(r"https?://|127\.0\.0\.1|/tmp/|/work/|site-packages|\.py\b|Traceback|Error\(|"
                       r"Exception|httpx|httpcore|vllm|prompt_embeds|VLLM_|pydantic\.", re.IGNORECASE)
RUNS = int(os.environ.get("TTC_FAULT_RUNS", "20"))
DEADLINE_S = 30.0
FROZEN_S = 5.0
IN_FLIGHT = 4  # requests running when the fault strikes
FAULTS = ("stop:generator", "stop:prm", "kill:generator", "kill:prm")


def ready(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    return False


def gauge(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


def server(service: psutil.Process, role: str) -> psutil.Process:
    for child in service.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            cmd = child.cmdline()
            if "--served-model-name" in cmd and cmd[cmd.index("--served-model-name") + 1] == role:
                return child
    raise LookupError(role)


def ask(url: str, i: int) -> dict[str, Any]:
    started = time.monotonic()
    try:
        response = httpx.post(f"{url}/v1/completions", timeout=DEADLINE_S + 30, json={
            "model": "ttc-arith", "prompt": f"question: {37 + i}+5-12\n", "flops_budget": 2e11,
            "strategy": "best_of_n"})
        status, retry_after = response.status_code, response.headers.get("retry-after")
        leaks = status != 200 and INTERNALS.search(response.text) is not None
    except httpx.HTTPError as exc:
        status, retry_after, leaks = 0, None, False
        print("lost:", exc, file=sys.stderr)
    return {"status": status, "seconds": round(time.monotonic() - started, 2), "retry_after": retry_after,
            "body_shows_internals": leaks}


def one_run(url: str, service: psutil.Process, fault: str) -> dict[str, Any]:
    action, role = fault.split(":")
    target = server(service, role)
    with concurrent.futures.ThreadPoolExecutor(IN_FLIGHT) as pool:
        asked = [pool.submit(ask, url, i) for i in range(IN_FLIGHT)]
        time.sleep(1.0)
        struck = time.monotonic()
        if action == "stop":
            target.send_signal(signal.SIGSTOP)
            time.sleep(FROZEN_S)
            target.send_signal(signal.SIGCONT)
        else:
            target.kill()
        answers = [a.result() for a in asked]
    while not ready(url) and time.monotonic() - struck < 240:
        time.sleep(0.5)
    back = ask(url, 99)
    return {"fault": fault, "answers": answers, "serving_again_after_s": round(time.monotonic() - struck, 1),
            "request_after": back["status"], "in_flight_after": gauge(url, "ttc_requests_in_flight")}


def main() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, TTC_PORT=str(port), TTC_REQUEST_TIMEOUT_S=str(DEADLINE_S),
               TTC_HEALTH_INTERVAL_S="0.5")
    proc = spawn_service(env)
    service = psutil.Process(proc.pid)
    runs: list[dict[str, Any]] = []
    seen: set[psutil.Process] = set()
    try:
        while not ready(url):
            assert proc.poll() is None, "the service did not start"
            time.sleep(1)
        for fault in FAULTS:
            for _ in range(RUNS):
                seen |= set(service.children(recursive=True))
                runs.append(one_run(url, service, fault))
                print(json.dumps(runs[-1]), flush=True)
        seen |= set(service.children(recursive=True))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    _, left = psutil.wait_procs(list(seen), timeout=60)
    answers = [a for r in runs for a in r["answers"]]
    summary = {
        "runs_per_fault": RUNS, "deadline_s": DEADLINE_S, "in_flight_per_run": IN_FLIGHT,
        "answers": len(answers), "by_status": dict(Counter(str(a["status"]) for a in answers)),
        "hung_or_lost": sum(1 for a in answers if a["status"] == 0 or a["seconds"] > DEADLINE_S + 5),
        "503_without_retry_after": sum(1 for a in answers if a["status"] == 503 and not a["retry_after"]),
        "error_bodies_showing_internals": sum(1 for a in answers if a["body_shows_internals"]),
        "in_flight_not_zero_after": sum(1 for r in runs if r["in_flight_after"] != 0),
        "not_serving_after": sum(1 for r in runs if r["request_after"] != 200),
        "serving_again_after_s": {f: max(r["serving_again_after_s"] for r in runs if r["fault"] == f)
                                  for f in FAULTS},
        "orphans_after_stop": len(left)}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"summary": summary, "runs": runs}, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
