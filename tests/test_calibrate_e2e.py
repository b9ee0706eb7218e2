"""Calibration and the benchmark, small, on the real embedded models: the grid runs through the
engine, a valid policy comes out for these models, and an interrupted run resumes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.conftest import Backends
from ttc_serve.app import wiring
from ttc_serve.app.settings import Settings
from ttc_serve.models.identity import fingerprint
from ttc_serve.router.calibrate import bench, calibrate
from ttc_serve.router.calibrate.dataset import embedded_split
from ttc_serve.router.calibrate.grid import DEFAULT_GRID
from ttc_serve.router.calibrate.records import RecordStore
from ttc_serve.router.difficulty import VerifierDifficulty
from ttc_serve.router.policy import CalibratedPolicy, ModelIds


def test_calibrate_then_bench_on_a_few_questions(backends: Backends, tmp_path: Path) -> None:
    settings = Settings()
    questions = embedded_split("dev", per_level=2)
    configs = tuple(c for c in DEFAULT_GRID if c.label in ("best_of_n", "beam M=4", "revisions 4:1"))
    # Budgets that pay for PRM-scored samples (~3e9 each: the PRM reads generator-large's body).
    plan = calibrate.CalibrationPlan(budgets=(1e10, 3e10), configs=configs, oracle_samples=4,
                                     concurrency=8)
    store = RecordStore(tmp_path / "cal" / "records.jsonl")

    async def collect(target: RecordStore) -> None:
        async with wiring.backend_pairs(settings, [backends.generator.base_url],
                                 [backends.prm.base_url]) as pairs:
            await calibrate.collect(wiring.engines(settings, pairs), questions, target, plan)

    asyncio.run(collect(store))
    grid = store.phase("grid")
    assert len(grid) == len(questions) * len(configs) * len(plan.budgets)
    assert all(r["flops_used"] <= r["budget"] for r in grid)
    lines = (tmp_path / "cal" / "records.jsonl").read_text().count("\n")
    asyncio.run(collect(RecordStore(tmp_path / "cal" / "records.jsonl")))  # resumes: nothing re-run
    assert (tmp_path / "cal" / "records.jsonl").read_text().count("\n") == lines

    models = ModelIds(generator=fingerprint(settings.generator_dir), verifier=fingerprint(settings.prm_dir))
    policy, summary = calibrate.fit_policy(store, questions, plan, models)
    policy.save(tmp_path / "policy.json")
    policy = CalibratedPolicy.load(tmp_path / "policy.json")
    assert set(policy.table) == {1, 2, 3, 4, 5} and policy.models == models
    assert summary["agreement"]["questions"] == len(questions)
    assert {p.name for p in calibrate.write_figures(summary, tmp_path / "cal")} >= {
        "strategies_by_level.png", "bins_oracle_vs_predicted.png"}

    bench_plan = bench.BenchPlan(budgets=(2e10,), curve_budgets=(1e10, 4e10), configs=configs,
                                 oracle_samples=4, difficulty_samples=policy.difficulty.samples,
                                 concurrency=8)
    bench_store = RecordStore(tmp_path / "bench" / "records.jsonl")
    auto_store = RecordStore(tmp_path / "bench" / "auto.jsonl")
    test_questions = embedded_split("test", per_level=1)

    async def run_bench() -> None:
        async with wiring.backend_pairs(settings, [backends.generator.base_url],
                                 [backends.prm.base_url]) as pairs:
            predictor = VerifierDifficulty(policy.difficulty.samples, tuple(policy.difficulty.thresholds))
            await bench.collect(wiring.engines(settings, pairs),
                                wiring.engines(settings, pairs, policy, predictor),
                                test_questions, bench_store, auto_store, bench_plan)

    asyncio.run(run_bench())
    auto = auto_store.phase("auto")
    assert len(auto) == len(test_questions)
    estimates = policy.depends_on_difficulty(2e10)  # auto pays for the estimate only where it matters
    assert all(r["flops_used"] <= r["budget"] and (r["flops"]["difficulty"] > 0) == estimates
               for r in auto)
    result = bench.summarise(bench_store, auto_store, test_questions, bench_plan, policy)
    assert result["agreement"]["questions"] == len(test_questions)  # bins predicted in their own phase
    entry = result["budgets"]["2e+10"]
    assert 0 <= entry["auto"]["accuracy"] <= 1
    assert entry["efficiency"]["bound"] in ("measured", "above", "below")
    assert len(bench.write_figures(result, tmp_path / "bench")) == 2


def test_exchange_runs_auto_at_matched_budgets(backends: Backends, tmp_path: Path) -> None:
    """The §7 pipeline end to end. The shipped generator's own server stands in for the large model
    (this suite does not start a second generator), with a stated 10x larger pre-training cost, so
    the matched budgets are real budgets that auto has to fit."""
    from dataclasses import replace

    from bench import exchange

    settings = Settings()
    assert settings.policy_path is not None
    policy = CalibratedPolicy.load(settings.policy_path)
    predictor = VerifierDifficulty(policy.difficulty.samples, tuple(policy.difficulty.thresholds))
    small = exchange.PretrainedModel.from_dir(settings.generator_dir)
    large = replace(small, name="stand-in", pretraining_tokens=small.pretraining_tokens * 10)
    questions = embedded_split("test", per_level=1)
    plan = exchange.ExchangePlan(ratios=(0.79, 22.0), oracle_samples=4, concurrency=8)
    store = RecordStore(tmp_path / "records.jsonl")

    async def run() -> None:
        async with wiring.backend_pairs(settings, [backends.generator.base_url],
                                        [backends.prm.base_url]) as (reference,):
            await exchange.collect_large(reference.generator, large, questions, store, plan, max_tokens=128)
        async with wiring.backend_pairs(settings, [backends.generator.base_url],
                                 [backends.prm.base_url]) as pairs:
            await exchange.collect_small(wiring.engines(settings, pairs),
                                         wiring.engines(settings, pairs, policy, predictor),
                                         questions, store, plan, small, large, max_tokens=128)

    asyncio.run(run())
    greedy = {r["qid"]: r for r in store.phase("large")}
    matched = store.phase("matched")
    assert len(greedy) == len(questions) and len(matched) == len(questions) * len(plan.ratios)
    for row in matched:
        expected = exchange.matched_budget(greedy[row["qid"]]["flops_used"], greedy[row["qid"]]["tokens"],
                                           row["ratio"], small, large)
        assert row["budget"] == expected and row["flops_used"] <= row["budget"]
    summary = exchange.summarise(store, questions, plan, small, large, [0.2, 0.4, 0.6, 0.8])
    low, high = summary["ratios"]["0.79"], summary["ratios"]["22"]
    assert low["mean_budget"] > high["mean_budget"] > summary["large_greedy_mean_flops"]
    assert low["inference_multiplier"] > high["inference_multiplier"] > 1
    assert [p.name for p in exchange.write_figures(summary, tmp_path)] == [
        "exchange_by_bin.png", "exchange_difference_by_bin.png"]
