"""Fitting the policy from grid results (pure functions), as the paper does: per difficulty bin and
budget, the configuration with the best accuracy; its accuracy is estimated with 2-fold
cross-validation (choose on one half of the questions, measure on the other). A per-bin choice is
kept only where it beats the single best configuration by more than the noise of that estimate."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ttc_serve.router.calibrate.stats import paired_bootstrap
from ttc_serve.router.difficulty import BINS, bin_of, fit_thresholds

Row = Mapping[str, Any]


@dataclass(frozen=True)
class Choice:
    config: str
    accuracy: float  # on the questions it was chosen on
    mean_flops: float
    # What it was chosen for: its bin at this budget ("bin"), every bin at this budget ("budget"),
    # or every bin at every budget ("all": one configuration, which sizes itself to the budget).
    scope: str = "bin"


def bins_from(values: Mapping[str, float], thresholds: Sequence[float]) -> dict[str, int]:
    return {qid: bin_of(v, thresholds) for qid, v in values.items()}


def quantile_bins(values: Mapping[str, float], bins: int = BINS) -> tuple[list[float], dict[str, int]]:
    thresholds = fit_thresholds(list(values.values()), bins)
    return thresholds, bins_from(values, thresholds)


def _cells(rows: Iterable[Row], bins: Mapping[str, int]) -> dict[tuple[int, float, str], list[Row]]:
    cells: dict[tuple[int, float, str], list[Row]] = defaultdict(list)
    for row in rows:
        if row["qid"] in bins:
            cells[(bins[row["qid"]], float(row["budget"]), row["config"])].append(row)
    return cells


def choose_best(rows: Iterable[Row], bins: Mapping[str, int]) -> dict[tuple[int, float], Choice]:
    """Per (bin, budget): the most accurate configuration; ties go to the one that spent less."""
    best: dict[tuple[int, float], Choice] = {}
    for (b, budget, config), items in sorted(_cells(rows, bins).items()):
        acc = sum(r["correct"] for r in items) / len(items)
        flops = sum(r["flops_used"] for r in items) / len(items)
        current = best.get((b, budget))
        if current is None or (acc, -flops) > (current.accuracy, -current.mean_flops):
            best[(b, budget)] = Choice(config, acc, flops)
    return best


def choose_overall(rows: Iterable[Row], bins: Mapping[str, int]) -> dict[tuple[int, float], Choice]:
    """One configuration for every bin and budget: the most accurate over all of them (ties to the
    one that spent less), reported per budget with its accuracy there."""
    by_config: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        if r["qid"] in bins:
            by_config[r["config"]].append(r)
    if not by_config:
        return {}

    def merit(items: list[Row]) -> tuple[float, float]:
        return (sum(r["correct"] for r in items) / len(items),
                -sum(r["flops_used"] for r in items) / len(items))

    best = max(sorted(by_config), key=lambda c: merit(by_config[c]))
    at_budget = choose_best(by_config[best], dict.fromkeys(bins, 0))
    return {key: replace(c, scope="all") for key, c in at_budget.items()}


def choose_by_cv(rows: Sequence[Row], bins: Mapping[str, int],
                 cv: Mapping[float, Mapping[str, float]]) -> dict[tuple[int, float], Choice]:
    """From coarse to fine, a finer choice only where it cross-validates better than the coarser one
    by more than its noise (the paired 95% interval of the margin lies above 0): one configuration
    for everything; else, at a budget, the single best configuration there; else, per bin.

    With few questions per bin the per-bin winner is often noise (the paper had 500 questions; a
    CPU calibration has far fewer), and so is the per-budget winner among configurations within a
    question or two of each other: per-bin choices kept on a margin of one or two dev questions
    have lost to the single best configuration on test (docs/routing.md has the measurements)."""
    per_bin = choose_best(rows, bins)
    single = choose_best(rows, dict.fromkeys(bins, 0))
    overall = choose_overall(rows, bins)
    chosen = {}
    for (b, budget), choice in per_bin.items():
        scores = cv.get(budget, {})
        if scores.get("budget_margin_low", 0.0) > 0.0 and (0, budget) in single:
            coarse, finer_low = replace(single[(0, budget)], scope="budget"), scores.get("margin_low", 0.0)
        elif (0, budget) in overall:
            coarse, finer_low = overall[(0, budget)], scores.get("overall_margin_low", 0.0)
        else:
            coarse, finer_low = choice, 1.0
        chosen[(b, budget)] = choice if finer_low > 0.0 else coarse
    return chosen


def cross_validated(rows: Sequence[Row], bins: Mapping[str, int], seed: int = 0,
                    folds: int = 2) -> dict[float, dict[str, float]]:
    """Per budget, chosen on the other fold(s) and measured on each question: the per-bin choice,
    the single best configuration at this budget, and the one configuration best over all budgets;
    with the paired differences and their 95% bootstrap intervals over the questions: ``margin``
    (per bin − single), ``budget_margin`` (single − overall), ``overall_margin`` (per bin − overall),
    each with ``_low`` and ``_high``."""
    qids = sorted(bins)
    random.Random(seed).shuffle(qids)
    fold_of = {q: i % folds for i, q in enumerate(qids)}
    by_key = {(r["config"], float(r["budget"]), r["qid"]): r for r in rows}
    budgets = sorted({float(r["budget"]) for r in rows})
    hits: dict[str, dict[float, list[bool]]] = {k: defaultdict(list) for k in ("bin", "budget", "all")}
    for k in range(folds):
        train = [r for r in rows if fold_of.get(r["qid"], -1) not in (k, -1)]
        picks = {"bin": choose_best(train, bins), "budget": choose_best(train, dict.fromkeys(bins, 0)),
                 "all": choose_overall(train, bins)}
        for q in (q for q in qids if fold_of[q] == k):
            for budget in budgets:
                for scope, chosen in picks.items():
                    pick = chosen.get((bins[q] if scope == "bin" else 0, budget))
                    row = by_key.get((pick.config, budget, q)) if pick else None
                    hits[scope][budget].append(bool(row and row["correct"]))
    out = {}
    for b in budgets:
        entry = {"per_bin_choice": _mean(hits["bin"][b]), "single_best": _mean(hits["budget"][b]),
                 "overall_best": _mean(hits["all"][b]), "questions": len(hits["bin"][b])}
        for name, (fine, coarse) in {"margin": ("bin", "budget"), "budget_margin": ("budget", "all"),
                                     "overall_margin": ("bin", "all")}.items():
            diff, low, high = paired_bootstrap(hits[fine][b], hits[coarse][b], seed=seed)
            entry.update({name: diff, f"{name}_low": low, f"{name}_high": high})
        out[b] = entry
    return out


def _mean(values: Sequence[bool]) -> float:
    return sum(values) / len(values)


Table = dict[int, dict[str, dict[float, dict[str, float]]]]


def accuracy_table(rows: Iterable[Row], group: Mapping[str, int]) -> Table:
    """group -> config -> budget -> accuracy, its standard error, mean FLOPs used, n."""
    out: Table = defaultdict(lambda: defaultdict(dict))
    for (g, budget, config), items in sorted(_cells(rows, group).items()):
        n = len(items)
        acc = sum(r["correct"] for r in items) / n
        out[g][config][budget] = {"accuracy": acc, "stderr": (acc * (1 - acc) / n) ** 0.5, "n": n,
                                  "mean_flops": sum(r["flops_used"] for r in items) / n}
    return out


def agreement(predicted: Mapping[str, int], oracle: Mapping[str, int], bins: int = BINS) -> dict[str, Any]:
    """Confusion counts (rows: oracle bin, columns: predicted bin), exact and within-one agreement."""
    common = sorted(set(predicted) & set(oracle))
    matrix = [[0] * bins for _ in range(bins)]
    for q in common:
        matrix[oracle[q] - 1][predicted[q] - 1] += 1
    exact = sum(predicted[q] == oracle[q] for q in common) / max(1, len(common))
    near = sum(abs(predicted[q] - oracle[q]) <= 1 for q in common) / max(1, len(common))
    return {"matrix": matrix, "exact": exact, "within_one": near, "questions": len(common)}
