"""The load ``bench/load.py`` drives (locust, headless): each user sends completions back to back,
as the README's request with a small budget. Every response is recorded (status, latency,
Retry-After) and written as JSON to ``$TTC_LOAD_OUT`` when the run ends."""

from __future__ import annotations

import json
import os
from typing import Any

from locust import HttpUser, events, task

RECORDS: list[dict[str, Any]] = []


class Client(HttpUser):
    @task
    def complete(self) -> None:
        with self.client.post("/v1/completions", json={
                "model": "ttc-arith", "prompt": "question: 37+5-12\n", "flops_budget": 2e10},
                catch_response=True, timeout=180) as response:
            RECORDS.append({"status": response.status_code,
                            "seconds": response.elapsed.total_seconds() if response.status_code else None,
                            "retry_after": response.headers.get("retry-after"),
                            "error": None if response.status_code else str(response.error)})
            if response.status_code in (200, 429):
                response.success()


@events.quitting.add_listener
def _write(environment: Any, **_: Any) -> None:
    with open(os.environ["TTC_LOAD_OUT"], "w") as out:
        json.dump(RECORDS, out)
