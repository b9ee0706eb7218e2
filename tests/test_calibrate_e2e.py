"""Calibration and the benchmark, small, on the real embedded models: the grid runs through the
engine, a valid policy comes out for these models, and an interrupted run resumes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from app.backends import backend_pairs, engines
from app.settings import Settings
from models.identity import fingerprint
from router.calibrate import bench, calibrate
from router.calibrate.dataset import embedded_split
from router.calibrate.grid import DEFAULT_GRID
from router.calibrate.records import RecordStore
from router.difficulty import VerifierDifficulty
from router.policy import CalibratedPolicy, ModelIds
from tests.conftest import Backends


def test_calibrate_then_bench_on_a_few_questions(backends: Backends, tmp_path: Path) -> None:
    settings = Settings()
    questions = embedded_split("dev", per_level=2)
    configs = tuple(c for c in DEFAULT_GRID if c.label in ("best_of_n", "beam M=4", "revisions 4:1"))
    plan = calibrate.CalibrationPlan(budgets=(1e9, 3e9), configs=configs, oracle_samples=4,
                                     concurrency=8)
    store = RecordStore(tmp_path / "cal" / "records.jsonl")

    async def collect(target: RecordStore) -> None:
        async with backend_pairs(settings, [backends.generator.base_url],
                                 [backends.prm.base_url]) as pairs:
            await calibrate.collect(engines(settings, pairs), questions, target, plan)

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

    bench_plan = bench.BenchPlan(budgets=(2e9,), curve_budgets=(1e9, 4e9), configs=configs,
                                 oracle_samples=4, concurrency=8)
    bench_store = RecordStore(tmp_path / "bench" / "records.jsonl")
    test_questions = embedded_split("test", per_level=1)

    async def run_bench() -> None:
        async with backend_pairs(settings, [backends.generator.base_url],
                                 [backends.prm.base_url]) as pairs:
            predictor = VerifierDifficulty(policy.difficulty.samples, tuple(policy.difficulty.thresholds))
            await bench.collect(engines(settings, pairs),
                                engines(settings, pairs, policy=policy, difficulty=predictor),
                                test_questions, bench_store, bench_plan)

    asyncio.run(run_bench())
    auto = bench_store.phase("auto")
    assert len(auto) == len(test_questions)
    assert all(r["flops_used"] <= r["budget"] and r["flops"]["difficulty"] > 0 for r in auto)
    result = bench.summarise(bench_store, test_questions, bench_plan, policy)
    entry = result["budgets"]["2e+09"]
    assert 0 <= entry["auto"]["accuracy"] <= 1
    assert entry["efficiency"]["bound"] in ("measured", "above", "below")
    assert len(bench.write_figures(result, tmp_path / "bench")) == 2
