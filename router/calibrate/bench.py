"""``ttc-serve bench``: on the held-out test split, ``auto`` (difficulty charged) against every fixed
configuration at the same budgets, and best-of-N weighted over a wider range of budgets.

Reported: accuracy with 95% intervals; ``auto`` minus the best fixed configuration, paired over
questions with a bootstrap interval; the efficiency figure, i.e. the FLOPs best-of-N needs to reach
the accuracy ``auto`` reaches at budget B, divided by B; and the agreement of the predicted bins
with the oracle bins (test pass@1, binned by the calibration split's oracle thresholds). The bins are
predicted for every question in a phase of their own, as ``auto`` would predict them: ``auto`` itself
skips the estimate at budgets where the policy's choice does not depend on it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ttc_serve.router.calibrate import fit, plots, stats
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
from ttc_serve.router.policy import CalibratedPolicy

AUTO = GridConfig("auto", "auto")
BEST_OF_N = "best_of_n"


@dataclass(frozen=True)
class BenchPlan:
    budgets: tuple[float, ...] = (2e9, 4e9, 8e9)
    curve_budgets: tuple[float, ...] = (1e9, 2e9, 4e9, 8e9, 1.6e10, 3.2e10)
    configs: tuple[GridConfig, ...] = DEFAULT_GRID
    oracle_samples: int = 16
    difficulty_samples: int = 4  # the policy's
    concurrency: int = 16


async def collect(fixed: Sequence[Engine], auto: Sequence[Engine], questions: Sequence[Question],
                  store: RecordStore, auto_store: RecordStore, plan: BenchPlan) -> None:
    """``auto``'s runs go to a store of their own, bound to the policy too: a new policy re-runs
    only them, not the fixed configurations (which depend on the models and questions alone)."""
    await oracle_pass_rates(fixed, questions, plan.oracle_samples, store, plan.concurrency)
    await predict_difficulty(fixed, questions, plan.difficulty_samples, store, plan.concurrency)
    await run_grid(auto, questions, [AUTO], plan.budgets, auto_store, "auto", plan.concurrency)
    await run_grid(fixed, questions, plan.configs, plan.budgets, store, "fixed", plan.concurrency)
    bon = [c for c in plan.configs if c.strategy == BEST_OF_N]
    extra = [b for b in plan.curve_budgets if b not in plan.budgets]
    await run_grid(fixed, questions, bon, extra, store, "fixed", plan.concurrency)


def summarise(store: RecordStore, auto_store: RecordStore, questions: Sequence[Question],
              plan: BenchPlan, policy: CalibratedPolicy) -> dict[str, Any]:
    wanted = {q.qid: q for q in questions}
    auto = {(r["budget"], r["qid"]): r for r in auto_store.phase("auto") if r["qid"] in wanted}
    fixed = {(r["config"], r["budget"], r["qid"]): r for r in store.phase("fixed") if r["qid"] in wanted}
    qids = sorted(wanted)

    def accuracy(rows: list[dict[str, Any]]) -> dict[str, Any]:
        hits = sum(r["correct"] for r in rows)
        low, high = stats.wilson(hits, len(rows))
        return {"accuracy": hits / len(rows), "ci95": [low, high], "n": len(rows),
                "mean_flops_used": sum(r["flops_used"] for r in rows) / len(rows)}

    bon_label = next(c.label for c in plan.configs if c.strategy == BEST_OF_N)
    curve = []
    for budget in sorted(set(plan.curve_budgets) | set(plan.budgets)):
        rows = [fixed[(bon_label, budget, q)] for q in qids if (bon_label, budget, q) in fixed]
        if rows:
            curve.append((budget, accuracy(rows)["accuracy"]))

    per_budget: dict[str, Any] = {}
    for budget in plan.budgets:
        auto_rows = [auto[(budget, q)] for q in qids if (budget, q) in auto]
        entry: dict[str, Any] = {"auto": accuracy(auto_rows), "fixed": {}}
        entry["auto"]["flops_by_account"] = {
            k: sum(r["flops"].get(k, 0.0) for r in auto_rows) / len(auto_rows)
            for k in ("difficulty", "generator", "verifier")}
        entry["auto"]["strategies"] = dict(Counter(r["strategy"] for r in auto_rows))
        entry["auto"]["estimated_share"] = sum("bin" in r for r in auto_rows) / len(auto_rows)
        for config in plan.configs:
            rows = [fixed[(config.label, budget, q)] for q in qids if (config.label, budget, q) in fixed]
            entry["fixed"][config.label] = accuracy(rows)
        best = max(entry["fixed"], key=lambda c: entry["fixed"][c]["accuracy"])
        auto_hits = [auto[(budget, q)]["correct"] for q in qids]
        best_hits = [fixed[(best, budget, q)]["correct"] for q in qids]
        diff, low, high = stats.paired_bootstrap(auto_hits, best_hits)
        entry["auto_minus_best_fixed"] = {"best_fixed": best, "difference": diff, "ci95": [low, high],
                                          "auto_at_least_as_good": high >= 0}
        target = entry["auto"]["accuracy"]
        flops, how = stats.flops_to_reach(curve, target)
        entry["efficiency"] = {"best_of_n_flops_to_match": flops, "ratio": flops / budget, "bound": how}
        per_budget[f"{budget:.3g}"] = entry

    rates = {r["qid"]: r["pass_rate"] for r in store.phase("oracle") if r["qid"] in wanted}
    oracle = fit.bins_from(rates, policy.fitted.get("oracle_thresholds", [0.2, 0.4, 0.6, 0.8]))
    scores = {r["qid"]: r["score"] for r in store.phase("difficulty")
              if r["qid"] in wanted and r["config"] == f"k={plan.difficulty_samples}"}
    predicted = fit.bins_from(scores, policy.difficulty.thresholds)
    by_bin: dict[str, Any] = {}
    for budget in plan.budgets:
        for b in range(1, policy.difficulty.bins + 1):
            in_bin = [q for q in qids if predicted.get(q) == b and (budget, q) in auto]
            if in_bin:
                by_bin.setdefault(str(b), {})[f"{budget:.3g}"] = {
                    "auto": accuracy([auto[(budget, q)] for q in in_bin])["accuracy"],
                    "best_of_n": accuracy([fixed[(bon_label, budget, q)] for q in in_bin
                                           if (bon_label, budget, q) in fixed])["accuracy"],
                    "questions": len(in_bin)}
    return {"plan": {**asdict(plan), "configs": [asdict(c) for c in plan.configs]},
            "questions": len(qids), "best_of_n_curve": curve, "budgets": per_budget,
            "agreement": fit.agreement(predicted, oracle), "by_predicted_bin": by_bin}


def write_figures(summary: dict[str, Any], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    series: dict[str, list[tuple[float, float]]] = {"best_of_n (curve)": summary["best_of_n_curve"]}
    for budget, entry in summary["budgets"].items():
        series.setdefault("auto (difficulty charged)", []).append((float(budget), entry["auto"]["accuracy"]))
        for label, acc in entry["fixed"].items():
            if label != "best_of_n":
                series.setdefault(label, []).append((float(budget), acc["accuracy"]))
    plots.lines(series, f"test split, {summary['questions']} questions", "FLOPs budget",
                out_dir / "auto_vs_fixed.png")
    plots.agreement_heatmap(summary["agreement"]["matrix"],
                            f"test: exact {summary['agreement']['exact']:.2f}, "
                            f"within one {summary['agreement']['within_one']:.2f}",
                            out_dir / "bins_oracle_vs_predicted.png")
    return [out_dir / "auto_vs_fixed.png", out_dir / "bins_oracle_vs_predicted.png"]
