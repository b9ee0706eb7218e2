"""Fitting the policy from grid results (pure functions), as the paper does: per difficulty bin and
budget, the configuration with the best accuracy; its accuracy is estimated with 2-fold
cross-validation (choose on one half of the questions, measure on the other). A per-bin choice is
kept only where it beats the single best configuration by more than the noise of that estimate."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from router.calibrate.stats import paired_bootstrap
from router.difficulty import BINS, bin_of, fit_thresholds

Row = Mapping[str, Any]


@dataclass(frozen=True)
class Choice:
    config: str
    accuracy: float  # on the questions it was chosen on
    mean_flops: float
    per_bin: bool = True  # chosen for its bin (False: the single best configuration, for all bins)


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


def choose_by_cv(rows: Sequence[Row], bins: Mapping[str, int],
                 cv: Mapping[float, Mapping[str, float]]) -> dict[tuple[int, float], Choice]:
    """Per budget, a configuration per bin only where that cross-validates better than the single
    best configuration for every bin by more than its noise: the paired 95% interval of the margin
    (``margin_low``) lies above 0. With few questions per bin the per-bin winner is often noise (the
    paper had 500 questions; a CPU calibration has far fewer), and a choice kept on a margin of one or
    two questions then loses on the test split (session 4: it sent a third of them to revisions)."""
    per_bin = choose_best(rows, bins)
    single = choose_best(rows, dict.fromkeys(bins, 0))
    chosen = {}
    for (b, budget), choice in per_bin.items():
        if cv.get(budget, {}).get("margin_low", 0.0) <= 0.0 and (0, budget) in single:
            flat = single[(0, budget)]
            chosen[(b, budget)] = Choice(flat.config, flat.accuracy, flat.mean_flops, per_bin=False)
        else:
            chosen[(b, budget)] = choice
    return chosen


def cross_validated(rows: Sequence[Row], bins: Mapping[str, int], seed: int = 0,
                    folds: int = 2) -> dict[float, dict[str, float]]:
    """Per budget: accuracy of the per-bin choice made on the other fold(s), and of the best single
    configuration chosen the same way, over all questions; and their paired difference with its 95%
    bootstrap interval over the questions (``margin``, ``margin_low``, ``margin_high``)."""
    qids = sorted(bins)
    random.Random(seed).shuffle(qids)
    fold_of = {q: i % folds for i, q in enumerate(qids)}
    by_key = {(r["config"], float(r["budget"]), r["qid"]): r for r in rows}
    budgets = sorted({float(r["budget"]) for r in rows})
    hits: dict[float, list[bool]] = defaultdict(list)
    hits_single: dict[float, list[bool]] = defaultdict(list)
    for k in range(folds):
        train = [r for r in rows if fold_of.get(r["qid"], -1) not in (k, -1)]
        chosen = choose_best(train, bins)
        single = choose_best(train, dict.fromkeys(bins, 0))
        for q in (q for q in qids if fold_of[q] == k):
            for budget in budgets:
                pick = chosen.get((bins[q], budget))
                row = by_key.get((pick.config, budget, q)) if pick else None
                hits[budget].append(bool(row and row["correct"]))
                flat = single.get((0, budget))
                row = by_key.get((flat.config, budget, q)) if flat else None
                hits_single[budget].append(bool(row and row["correct"]))
    out = {}
    for b in budgets:
        margin, low, high = paired_bootstrap(hits[b], hits_single[b], seed=seed)
        out[b] = {"per_bin_choice": sum(hits[b]) / len(hits[b]),
                  "single_best": sum(hits_single[b]) / len(hits_single[b]), "questions": len(hits[b]),
                  "margin": margin, "margin_low": low, "margin_high": high}
    return out


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
