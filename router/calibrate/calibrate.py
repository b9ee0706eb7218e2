"""``ttc-serve calibrate``: run the grid on the calibration split and fit the policy from it.

1. Difficulty: the verifier-based score of every question (what ``auto`` computes when serving) and
   the oracle pass@1 (from ``oracle_samples`` samples); both binned by quantiles into 5 bins.
2. The strategy grid: every configuration at every budget on every question.
3. The policy: per predicted bin and budget, the most accurate configuration (2-fold
   cross-validated accuracy reported beside it); written with the models' fingerprints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ttc_serve.router.calibrate import fit, plots
from ttc_serve.router.calibrate.dataset import Question
from ttc_serve.router.calibrate.grid import (
    DEFAULT_GRID,
    GridConfig,
    oracle_pass_rates,
    predict_difficulty,
    run_grid,
)
from ttc_serve.router.calibrate.records import RecordStore
from ttc_serve.router.engine import Engine
from ttc_serve.router.policy import CalibratedPolicy, DifficultySpec, GridPoint, ModelIds


@dataclass(frozen=True)
class CalibrationPlan:
    budgets: tuple[float, ...] = (1e9, 1.5e9, 2e9, 4e9, 8e9)
    configs: tuple[GridConfig, ...] = DEFAULT_GRID
    difficulty_samples: int = 4
    oracle_samples: int = 16
    concurrency: int = 16
    cv_seed: int = 0


async def collect(engines: Sequence[Engine], questions: Sequence[Question], store: RecordStore,
                  plan: CalibrationPlan) -> None:
    await predict_difficulty(engines, questions, plan.difficulty_samples, store, plan.concurrency)
    await oracle_pass_rates(engines, questions, plan.oracle_samples, store, plan.concurrency)
    await run_grid(engines, questions, plan.configs, plan.budgets, store, "grid", plan.concurrency)


def difficulty_views(store: RecordStore, questions: Sequence[Question], plan: CalibrationPlan
                     ) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """(predicted scores, oracle pass rates, mean FLOPs of one prediction) for these questions."""
    wanted = {q.qid for q in questions}
    scores = {r["qid"]: r["score"] for r in store.phase("difficulty")
              if r["qid"] in wanted and r["config"] == f"k={plan.difficulty_samples}"}
    rates = {r["qid"]: r["pass_rate"] for r in store.phase("oracle")
             if r["qid"] in wanted and r["config"] == f"n={plan.oracle_samples}"}
    costs = [r["flops_used"] for r in store.phase("difficulty") if r["qid"] in scores]
    return scores, rates, {"mean": sum(costs) / max(1, len(costs)), "max": max(costs, default=0.0)}


class NothingSolved(ValueError):
    """No configuration answered any question right: a policy fitted on that would be noise."""


def fit_policy(store: RecordStore, questions: Sequence[Question], plan: CalibrationPlan,
               models: ModelIds) -> tuple[CalibratedPolicy, dict[str, Any]]:
    wanted = {q.qid for q in questions}
    labels = {c.label for c in plan.configs}
    rows = [r for r in store.phase("grid") if r["qid"] in wanted and r["config"] in labels
            and float(r["budget"]) in plan.budgets]
    if not any(r["correct"] for r in rows):
        raise NothingSolved(
            f"no configuration answered any of the {len(questions)} questions right at any budget "
            f"({len(rows)} runs), so there is nothing to choose between and no policy was written. Check "
            "that the answers are what the model's final answer will be (its last \\boxed{..} or "
            "'answer: ..' line), that max_tokens (TTC_DEFAULT_MAX_TOKENS) leaves room to finish, and "
            "that the budgets pay for at least one sample.")
    scores, rates, predict_cost = difficulty_views(store, questions, plan)
    thresholds, predicted = fit.quantile_bins(scores)
    oracle_thresholds, oracle = fit.quantile_bins(rates)
    cv = fit.cross_validated(rows, predicted, seed=plan.cv_seed)
    chosen = fit.choose_by_cv(rows, predicted, cv)
    configs = {c.label: c for c in plan.configs}
    table = {
        b: [GridPoint(budget=budget, strategy=configs[chosen[(b, budget)].config].strategy,
                      params=configs[chosen[(b, budget)].config].params,
                      accuracy=chosen[(b, budget)].accuracy)
            for budget in plan.budgets if (b, budget) in chosen]
        for b in range(1, len(thresholds) + 2)}
    levels = {q.qid: q.level for q in questions if q.level is not None}
    policy = CalibratedPolicy(
        models=models, difficulty=DifficultySpec(samples=plan.difficulty_samples, thresholds=thresholds),
        table=table, fitted={
            "split_questions": len(questions), "budgets": list(plan.budgets),
            "configs": {c.label: {"strategy": c.strategy, "params": c.params} for c in plan.configs},
            "chosen": {f"{b}@{budget:.3g}": c.config for (b, budget), c in sorted(chosen.items())},
            "granularity": {f"{budget:.3g}": sorted({c.scope for (_, at), c in chosen.items()
                                                     if at == budget}) for budget in plan.budgets},
            "oracle_thresholds": oracle_thresholds, "prediction_flops": predict_cost,
            "cross_validated_accuracy": {f"{b:.3g}": v for b, v in cv.items()}})
    summary = {
        "plan": {**asdict(plan), "configs": [asdict(c) for c in plan.configs]},
        "questions": len(questions), "prediction_flops": predict_cost,
        "thresholds": {"predicted": thresholds, "oracle": oracle_thresholds},
        "agreement": fit.agreement(predicted, oracle),
        "cross_validated": {f"{b:.3g}": v for b, v in cv.items()},
        "chosen": policy.fitted["chosen"], "granularity": policy.fitted["granularity"],
        "by_level": _jsonable(fit.accuracy_table(rows, levels)) if levels else {},
        "by_predicted_bin": _jsonable(fit.accuracy_table(rows, predicted)),
        "by_oracle_bin": _jsonable(fit.accuracy_table(rows, oracle)),
    }
    return policy, summary


def _jsonable(table: fit.Table) -> dict[str, Any]:
    return {str(g): {c: {f"{b:.3g}": v for b, v in sorted(by_b.items())} for c, by_b in cs.items()}
            for g, cs in sorted(table.items())}


def _from_json(table: dict[str, Any]) -> fit.Table:
    return {int(g): {c: {float(b): v for b, v in by_b.items()} for c, by_b in cs.items()}
            for g, cs in table.items()}


def write_figures(summary: dict[str, Any], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for key, title, name in (("by_level", "level", "strategies_by_level.png"),
                             ("by_predicted_bin", "predicted bin", "strategies_by_predicted_bin.png"),
                             ("by_oracle_bin", "oracle bin", "strategies_by_oracle_bin.png")):
        if summary.get(key):
            plots.accuracy_panels(_from_json(summary[key]), title, out_dir / name)
            written.append(out_dir / name)
    plots.agreement_heatmap(summary["agreement"]["matrix"],
                            f"dev: exact {summary['agreement']['exact']:.2f}, "
                            f"within one {summary['agreement']['within_one']:.2f}",
                            out_dir / "bins_oracle_vs_predicted.png")
    written.append(out_dir / "bins_oracle_vs_predicted.png")
    return written

