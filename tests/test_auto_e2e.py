"""strategy="auto" through HTTP on the real embedded models: with a policy whose choice turns on the
bin, difficulty is predicted with the PRM (and charged) and the policy's choice for that bin runs;
where every bin gets the same configuration, the estimate is skipped and the whole budget goes to it.
All within the budget."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Backends, LiveService, service_settings
from ttc_serve.app.settings import EMBEDDED_POLICY, Settings
from ttc_serve.app.wiring import load_policy
from ttc_serve.router.policy import CalibratedPolicy, GridPoint, PolicyMismatch


def _per_bin_policy() -> CalibratedPolicy:
    """The shipped policy with the easiest bin sent to majority and every other to best-of-N at
    every budget, so that the choice depends on the bin everywhere."""
    shipped = CalibratedPolicy.load(EMBEDDED_POLICY)
    table = {b: [GridPoint(budget=p.budget, strategy="majority" if b == 1 else "best_of_n")
                 for p in points] for b, points in shipped.table.items()}
    return shipped.model_copy(update={"table": table})


@pytest.fixture(scope="module")
def per_bin(backends: Backends, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    path = tmp_path_factory.mktemp("policy") / "policy.json"
    _per_bin_policy().save(path)
    with LiveService(service_settings(backends, policy_path=path)) as live, \
            httpx.Client(base_url=live.url, timeout=120) as http:
        yield http


# The estimate (4 samples, PRM-scored) costs ~5e9; the budgets leave the choice something to run.
@pytest.mark.parametrize("budget", [2e10, 8e10])
def test_auto_reports_difficulty_bin_and_the_policy_choice_within_budget(
        per_bin: httpx.Client, budget: float) -> None:
    policy = _per_bin_policy()
    reply = per_bin.post("/v1/completions", json={
        "model": "ttc-arith", "prompt": "question: 41+17-8\n", "flops_budget": budget, "seed": 5})
    assert reply.status_code == 200, reply.text
    compute = reply.json()["compute"]
    difficulty = compute["difficulty"]
    assert 1 <= difficulty["bin"] <= policy.difficulty.bins and 0 <= difficulty["score"] <= 1
    assert difficulty["samples"] == policy.difficulty.samples
    spent_on_prediction = compute["flops"]["difficulty"]
    assert spent_on_prediction > 0
    # the policy is asked with what the prediction left over
    assert compute["strategy"] == policy.choose(difficulty["bin"], budget - spent_on_prediction)[0]
    assert compute["flops_used"] <= budget
    assert compute["flops_used"] == pytest.approx(sum(compute["flops"].values()))


def test_the_prediction_samples_are_reused_by_the_strategy(per_bin: httpx.Client) -> None:
    reply = per_bin.post("/v1/completions", json={
        "model": "ttc-arith", "prompt": "question: 3+4\n", "flops_budget": 4e10, "seed": 1,
        "strategy": "auto", "strategy_params": {}, "return_trace": True})
    compute = reply.json()["compute"]
    # the difficulty samples show up among the strategy's candidates (traced), not drawn twice
    assert compute["samples"] >= compute["difficulty"]["samples"]
    assert reply.json()["choices"][0]["text"].strip().endswith("answer: 7")


def test_auto_skips_the_estimate_where_every_bin_gets_the_same_choice(
        backends: Backends, per_bin: httpx.Client, tmp_path: Path) -> None:
    varied = _per_bin_policy()
    flat = varied.model_copy(update={"table": {b: varied.table[1] for b in varied.table}})
    flat.save(tmp_path / "policy.json")
    budget = 2e10
    body = {"model": "ttc-arith", "prompt": "question: 41+17-8\n", "flops_budget": budget, "seed": 5}
    with LiveService(service_settings(backends, policy_path=tmp_path / "policy.json")) as live:
        reply = httpx.post(f"{live.url}/v1/completions", json=body, timeout=120)
    assert reply.status_code == 200, reply.text
    compute = reply.json()["compute"]
    assert compute["difficulty"] is None and compute["flops"].get("difficulty", 0.0) == 0.0
    assert compute["strategy"] == flat.choose(None, budget)[0] and compute["flops_used"] <= budget
    # the same request where the choice does turn on the bin pays for the estimate
    assert per_bin.post("/v1/completions", json=body).json()["compute"]["flops"]["difficulty"] > 0


def test_a_policy_for_other_models_is_refused_at_start_up(tmp_path: Path) -> None:
    policy = CalibratedPolicy.load(EMBEDDED_POLICY)
    other = policy.model_copy(update={"models": policy.models.model_copy(update={"generator": "x@0"})})
    other.save(tmp_path / "policy.json")
    with pytest.raises(PolicyMismatch, match="x@0"):
        load_policy(Settings(policy_path=tmp_path / "policy.json"))
    assert load_policy(Settings(policy_path=None))[1] is None  # TTC_POLICY_PATH=none: best-of-N
