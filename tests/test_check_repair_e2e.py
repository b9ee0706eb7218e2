"""Check-and-repair revisions through HTTP on the real embedded generator, which has a check form."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Backends, LiveService, service_settings
from tests.test_strategies_e2e import MODEL, run
from ttc_serve.models.check_format import CheckFormat
from ttc_serve.router.selection import extract_answer

HARD = "question: 912+388-475+63-201+77\n"


def _chains(trace: list[dict[str, object]]) -> dict[int, list[dict[str, object]]]:
    chains: dict[int, list[dict[str, object]]] = {}
    for attempt in trace:
        chains.setdefault(int(attempt["chain"]), []).append(attempt)  # type: ignore[call-overload]
    return chains


def test_a_revision_cuts_at_the_failed_check_and_every_call_is_charged(client: httpx.Client) -> None:
    compute = run(client, HARD, 1e11, "revisions", {"n": 16, "ratio": 1.0, "selection": "majority"},
                  return_trace=True)["compute"]
    assert isinstance(compute, dict)
    params = compute["params"]
    assert params["mode"] == "check_repair"  # auto: the shipped generator has a check form
    assert params["checks"] >= 1 and params["repairs"] >= 1
    assert compute["flops_used"] <= compute["flops_budget"]
    # the account is exactly what each backend call cost, the checks' calls included
    assert compute["flops_used"] == pytest.approx(sum(c["flops"] for c in compute["calls"]))
    assert compute["backend_calls"]["score"] == 0  # majority scores nothing
    form, repaired = CheckFormat(), 0
    for attempts in _chains(compute["trace"]).values():
        for before, after in itertools.pairwise(attempts):
            cut = after["repaired_at"]
            old = str(before["text"]).splitlines()
            new = str(after["text"]).splitlines()
            assert new[:cut] == old[:cut]  # the steps before the failed check are kept as written
            was, now = form.parse_step(old[cut]), form.parse_step(new[cut])
            assert was is not None and now is not None
            assert was.expression == now.expression and was.written != now.written
            repaired += 1
    assert repaired == params["repairs"]


def test_a_chain_whose_checks_all_pass_stops_there(client: httpx.Client) -> None:
    body = run(client, "question: 3+4\n", 1e11, "revisions", {"n": 16, "ratio": 1.0}, return_trace=True)
    compute = body["compute"]
    assert isinstance(compute, dict)
    params = compute["params"]
    assert params["parallel"] == 4 and params["sequential"] == 4
    assert params["settled"] == 4 and params["repairs"] == 0 and params["n"] == 4
    assert params["checks"] == 1  # "3+4", checked once for the four chains that all wrote it
    # weighted: only the chains' last attempts are scored, in one verifier call
    scored = [c for c in compute["calls"] if c["backend"] == "verifier"]
    assert len(scored) == 1 and len(scored[0]["input_tokens"]) == 4
    assert extract_answer(body["choices"][0]["text"]) == "7"  # type: ignore[index]


@pytest.fixture(scope="module")
def without_checks(backends: Backends) -> Iterator[LiveService]:
    with LiveService(service_settings(backends, revision_check=False)) as live:
        yield live


def test_a_deployment_without_the_check_form_revises_and_refuses_check_repair(
        without_checks: LiveService) -> None:
    with httpx.Client(base_url=without_checks.url, timeout=120) as client:
        compute = run(client, "question: 3+4\n", 3e10, "revisions", {"n": 4})["compute"]
        assert compute["params"]["mode"] == "revise"  # type: ignore[index]
        response = client.post("/v1/completions", json={
            "model": MODEL, "prompt": "question: 3+4\n", "flops_budget": 3e10,
            "strategy": "revisions", "strategy_params": {"mode": "check_repair"}})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "strategy_params.mode" and "check form" in error["message"]
