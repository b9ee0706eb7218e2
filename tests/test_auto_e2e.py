"""strategy="auto" through HTTP on the real embedded models and the shipped calibrated policy:
difficulty predicted with the PRM (and charged), the policy's choice run, all within the budget."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from app.settings import EMBEDDED_POLICY, Settings
from app.state import load_policy
from router.policy import CalibratedPolicy, PolicyMismatch


@pytest.mark.parametrize("budget", [2e9, 8e9])
def test_auto_reports_difficulty_bin_and_the_policy_choice_within_budget(
        client: httpx.Client, budget: float) -> None:
    policy = CalibratedPolicy.load(EMBEDDED_POLICY)
    reply = client.post("/v1/completions", json={
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


def test_the_prediction_samples_are_reused_by_the_strategy(client: httpx.Client) -> None:
    reply = client.post("/v1/completions", json={
        "model": "ttc-arith", "prompt": "question: 3+4\n", "flops_budget": 4e9, "seed": 1,
        "strategy": "auto", "strategy_params": {}, "return_trace": True})
    compute = reply.json()["compute"]
    # the difficulty samples show up among the strategy's candidates (traced), not drawn twice
    assert compute["samples"] >= compute["difficulty"]["samples"]
    assert reply.json()["choices"][0]["text"].strip().endswith("answer: 7")


def test_a_policy_for_other_models_is_refused_at_start_up(tmp_path: Path) -> None:
    policy = CalibratedPolicy.load(EMBEDDED_POLICY)
    other = policy.model_copy(update={"models": policy.models.model_copy(update={"generator": "x@0"})})
    other.save(tmp_path / "policy.json")
    with pytest.raises(PolicyMismatch, match="x@0"):
        load_policy(Settings(policy_path=tmp_path / "policy.json"))
    assert load_policy(Settings(policy_path=None))[1] is None  # TTC_POLICY_PATH=none: best-of-N
