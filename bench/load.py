"""Load on the real service: the embedded backends, ``ttc-serve serve`` in front of them with an
admission limit of ``LIMIT`` requests in flight, and locust (headless, loopback only) at 1× and 4×
that many users, each sending requests back to back for ``SECONDS``. Expected: at 1× only 200s; at
4× only 200s and 429s (with Retry-After, answered at once), none lost. Writes
``bench/results/load.json``. ``make load``; about 7 minutes on two cores."""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.service import spawn_service
from ttc_serve.app.settings import Settings
from ttc_serve.app.wiring import embedded_server_specs
from ttc_serve.models.launcher import free_port, running

RESULTS = Path(__file__).resolve().parent / "results" / "load.json"
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
LIMIT = 8
SECONDS = int(os.environ.get("TTC_LOAD_SECONDS", "120"))


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 4)


def summary(records: list[dict[str, Any]], users: int) -> dict[str, Any]:
    by_status: dict[str, int] = {}
    for r in records:
        by_status[str(r["status"])] = by_status.get(str(r["status"]), 0) + 1
    ok = [r["seconds"] for r in records if r["status"] == 200]
    refused = [r["seconds"] for r in records if r["status"] == 429]
    return {
        "users": users, "admission_limit": LIMIT, "seconds": SECONDS, "requests": len(records),
        "by_status": by_status, "lost": sum(1 for r in records if r["status"] == 0),
        "429_without_retry_after": sum(1 for r in records if r["status"] == 429 and not r["retry_after"]),
        "200_latency_s": {"p50": percentile(ok, 0.5), "p95": percentile(ok, 0.95),
                          "mean": round(statistics.fmean(ok), 4) if ok else None},
        "429_latency_s": {"p50": percentile(refused, 0.5), "p99": percentile(refused, 0.99)},
        "throughput_per_s": round(len(ok) / SECONDS, 3)}


def ready(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    return False


def run_locust(url: str, users: int) -> list[dict[str, Any]]:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run([sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", url,
                        "-u", str(users), "-r", str(users), "-t", f"{SECONDS}s", "--only-summary",
                        "--stop-timeout", "180"],
                       env=dict(os.environ, TTC_LOAD_OUT=out.name), check=False)
        records: list[dict[str, Any]] = json.loads(Path(out.name).read_text())
    return records


def main() -> None:
    settings = Settings()
    with running(*embedded_server_specs(settings), timeout_s=600) as (generator, prm):
        port = free_port()
        env = dict(os.environ, TTC_GENERATOR_URL=generator.base_url, TTC_PRM_URL=prm.base_url,
                   TTC_PORT=str(port), TTC_MAX_IN_FLIGHT=str(LIMIT))
        service = spawn_service(env)
        url = f"http://127.0.0.1:{port}"
        try:
            while not ready(url):
                time.sleep(0.5)
            runs = [summary(run_locust(url, users), users) for users in (LIMIT, 4 * LIMIT)]
        finally:
            service.terminate()
            service.wait(timeout=60)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"runs": runs, "machine": "2 CPU cores, the embedded models on vLLM CPU"},
                                  indent=2) + "\n")
    print(json.dumps(runs, indent=2))


if __name__ == "__main__":
    main()
