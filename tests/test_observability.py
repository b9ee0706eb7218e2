"""Monitoring as operators run it: promtool on the shipped Prometheus config and alert rules (and
the rules' unit tests), then a real Prometheus scraping the real service, and every query of the
shipped Grafana dashboard run against it, each returning data after a few requests.

Prometheus is Debian's package (``make tools`` installs it where it can); without it these skip."""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import Backends, LiveService, service_settings
from ttc_serve.app.settings import Settings
from ttc_serve.models.launcher import free_port

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
MODEL = Settings().model_name

MISSING = shutil.which("promtool") is None or shutil.which("prometheus") is None
if MISSING and os.environ.get("TTC_REQUIRE_TOOLS"):  # CI (.ci/run): a skip there would prove nothing
    raise RuntimeError("TTC_REQUIRE_TOOLS is set but Prometheus is not installed (make tools)")
pytestmark = pytest.mark.skipif(MISSING, reason="Prometheus is not installed (make tools, as root)")


def promtool(*args: str) -> None:
    result = subprocess.run(["promtool", *args], capture_output=True, text=True, cwd=DEPLOY)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_checks_the_config_and_its_rules() -> None:
    promtool("check", "config", "prometheus.yml")
    promtool("check", "rules", "alerts.yml")


def test_the_alert_rules_pass_their_unit_tests() -> None:
    promtool("test", "rules", "alerts_test.yml")


def test_every_alert_has_a_unit_test_that_fires_it() -> None:
    rules = yaml.safe_load((DEPLOY / "alerts.yml").read_text())
    alerts = {r["alert"] for group in rules["groups"] for r in group["rules"]}
    tests = yaml.safe_load((DEPLOY / "alerts_test.yml").read_text())["tests"]
    fired = {case["alertname"] for test in tests for case in test["alert_rule_test"]
             if case.get("exp_alerts")}
    assert fired == alerts


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"]
            for target in panel["targets"]]


@pytest.fixture(scope="module")
def scraped(backends: Backends) -> Iterator[tuple[LiveService, str]]:
    """The service (admitting one request at a time, so that a burst gets 429s) and a Prometheus
    scraping it and both vLLM servers every second with the shipped rules loaded."""
    settings = service_settings(backends, max_in_flight=1)
    with LiveService(settings) as live, tempfile.TemporaryDirectory() as tmp:
        config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
        config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
        config["rule_files"] = [str(DEPLOY / "alerts.yml")]
        targets = {"ttc-serve": [live.url[7:]],
                   "vllm": [backends.generator.base_url[7:], backends.prm.base_url[7:]]}
        for job in config["scrape_configs"]:
            job["static_configs"] = [{"targets": targets[job["job_name"]]}]
        (Path(tmp) / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        prometheus = subprocess.Popen(
            ["prometheus", f"--config.file={tmp}/prometheus.yml", f"--storage.tsdb.path={tmp}/data",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while not ready(url):  # it answers 503 until its storage is open
                assert prometheus.poll() is None and time.monotonic() < deadline, "Prometheus did not start"
                time.sleep(0.5)
            yield live, url
        finally:
            prometheus.terminate()
            prometheus.wait(timeout=30)


def ready(prometheus: str) -> bool:
    try:
        return httpx.get(f"{prometheus}/-/ready", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def query(prometheus: str, expr: str) -> list[dict[str, object]]:
    body = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert body["status"] == "success", (expr, body)
    result: list[dict[str, object]] = body["data"]["result"]
    return result


def wait_for(prometheus: str, expr: str, timeout_s: float = 60) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = query(prometheus, expr)
        except httpx.HTTPError:
            result = []
        if result or time.monotonic() > deadline:
            return result
        time.sleep(1.0)


def traffic(url: str) -> None:
    """A few requests of each kind the dashboard shows: answered ones (strategies that score and
    that vote), one the generator refuses (a backend error), and a burst that gets 429s."""
    def post(body: dict[str, object]) -> int:
        payload = {"model": MODEL, "prompt": "question: 4+5\n", "flops_budget": 2e10, **body}
        return httpx.post(f"{url}/v1/completions", json=payload, timeout=120).status_code

    assert post({"strategy": "best_of_n"}) == 200
    assert post({"strategy": "majority"}) == 200
    assert post({"strategy": "majority", "logit_bias": {"99999999": 1}}) == 400  # not a token id
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(post, [{"strategy": "beam_search"}] * 6))
    assert 429 in statuses and 200 in statuses, statuses


def test_prometheus_scrapes_the_service_and_every_dashboard_query_returns_data(
        scraped: tuple[LiveService, str]) -> None:
    live, prometheus = scraped
    assert wait_for(prometheus, 'up{job="ttc-serve"} == 1'), "the service was never scraped"
    assert len(wait_for(prometheus, 'up{job="vllm"} == 1')) == 2
    traffic(live.url)
    time.sleep(3)  # two scrapes after the last request, so every rate() has its points
    names = {s["metric"]["__name__"] for s in query(prometheus, '{__name__=~"ttc_.+"}')}  # type: ignore[index]
    assert {"ttc_requests_total", "ttc_flops_total", "ttc_backend_up",
            "ttc_compute_finish_total", "ttc_requests_rejected_total"} <= names
    empty = [(title, expr) for title, expr in dashboard_queries() if not wait_for(prometheus, expr, 20)]
    assert not empty, f"dashboard queries with no data: {empty}"
    rules = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    assert {r["name"] for g in rules for r in g["rules"]} >= {"TtcBackendDown", "TtcLatencyHigh"}
    assert all(r["health"] == "ok" for g in rules for r in g["rules"]), rules
