"""Fitting the policy from grid results, and the benchmark's statistics (pure functions)."""

from __future__ import annotations

import pytest

from ttc_serve.router.calibrate import fit, stats
from ttc_serve.router.calibrate.records import RecordStore


def rows(table: dict[tuple[str, float], list[bool]]) -> list[dict[str, object]]:
    out = []
    for (config, budget), hits in table.items():
        for i, hit in enumerate(hits):
            out.append({"phase": "grid", "config": config, "budget": budget, "qid": f"q{i}",
                        "correct": hit, "flops_used": budget / 2})
    return out


def test_choose_best_picks_per_bin_and_breaks_ties_by_spend() -> None:
    data = rows({("a", 1.0): [True, True, False, False], ("b", 1.0): [False, False, True, True]})
    bins = {"q0": 1, "q1": 1, "q2": 2, "q3": 2}
    chosen = fit.choose_best(data, bins)
    assert chosen[(1, 1.0)].config == "a" and chosen[(2, 1.0)].config == "b"
    cheaper = [dict(r, flops_used=0.1) if r["config"] == "b" else r for r in data]
    assert fit.choose_best(cheaper, dict.fromkeys(bins, 1))[(1, 1.0)].config == "b"  # 50% each


def test_cross_validation_chooses_on_one_fold_and_measures_on_the_other() -> None:
    # "a" wins in bin 1 and "b" in bin 2 on every question: the per-bin choice is right everywhere,
    # while any single configuration is wrong on half.
    n = 20
    data = rows({("a", 1.0): [i < n // 2 for i in range(n)], ("b", 1.0): [i >= n // 2 for i in range(n)]})
    bins = {f"q{i}": 1 if i < n // 2 else 2 for i in range(n)}
    cv = fit.cross_validated(data, bins)[1.0]
    assert cv["per_bin_choice"] == 1.0 and cv["single_best"] <= 0.5 and cv["questions"] == n
    assert cv["margin"] == cv["per_bin_choice"] - cv["single_best"] and cv["margin_low"] > 0


def test_a_finer_choice_is_kept_only_where_it_beats_the_coarser_one_beyond_noise() -> None:
    # "a" is the most accurate over all budgets (8 of 12 vs 7), "b" at 4.0 (4 of 4 vs 3)
    data = rows({("a", 1.0): [True, True, True, False], ("b", 1.0): [False, True, False, False],
                 ("a", 2.0): [True, False, True, False], ("b", 2.0): [False, True, False, True],
                 ("a", 4.0): [True, True, True, False], ("b", 4.0): [True, True, True, True]})
    bins = {"q0": 1, "q1": 1, "q2": 2, "q3": 2}
    cv = {1.0: {"budget_margin_low": -0.5, "overall_margin_low": -0.5, "margin_low": -0.5},
          2.0: {"budget_margin_low": -0.1, "overall_margin_low": 0.1, "margin_low": 0.1},
          4.0: {"budget_margin_low": 0.1, "overall_margin_low": 0.2, "margin_low": -0.05}}
    chosen = fit.choose_by_cv(data, bins, cv)
    # nothing finer is clear at 1.0: the one configuration for everything
    assert {chosen[(1, 1.0)].config, chosen[(2, 1.0)].config} == {"a"}
    assert chosen[(1, 1.0)].scope == "all"
    # at 2.0 the per-bin choice beats the overall one beyond noise
    assert chosen[(1, 2.0)].scope == "bin" and chosen[(2, 2.0)].scope == "bin"
    # at 4.0 the budget's own best ("b", 4 of 4) beats the overall one beyond noise; per bin does not
    assert chosen[(1, 4.0)].config == chosen[(2, 4.0)].config == "b"
    assert chosen[(1, 4.0)].scope == "budget"


def test_cross_validation_reports_the_three_margins_with_intervals() -> None:
    n = 20
    data = rows({("a", 1.0): [i < n // 2 for i in range(n)], ("b", 1.0): [i >= n // 2 for i in range(n)],
                 ("a", 2.0): [True] * n, ("b", 2.0): [False] * n})
    bins = {f"q{i}": 1 if i < n // 2 else 2 for i in range(n)}
    cv = fit.cross_validated(data, bins)
    assert cv[2.0]["overall_best"] == 1.0  # "a" is best over both budgets, and right everywhere at 2.0
    for name in ("margin", "budget_margin", "overall_margin"):
        assert cv[1.0][f"{name}_low"] <= cv[1.0][name] <= cv[1.0][f"{name}_high"]
    assert cv[1.0]["overall_margin_low"] > 0  # per bin at 1.0 beats "a" everywhere, clearly


def test_agreement_counts_exact_and_near_matches() -> None:
    result = fit.agreement({"a": 1, "b": 2, "c": 5}, {"a": 1, "b": 3, "c": 3})
    assert result["exact"] == pytest.approx(1 / 3) and result["within_one"] == pytest.approx(2 / 3)
    assert result["matrix"][2][1] == 1 and sum(map(sum, result["matrix"])) == 3


def test_flops_to_reach_interpolates_and_says_when_it_is_a_bound() -> None:
    curve = [(1e9, 0.4), (4e9, 0.6), (1.6e10, 0.7)]
    flops, how = stats.flops_to_reach(curve, 0.5)
    assert how == "measured" and flops == pytest.approx(2e9)
    assert stats.flops_to_reach(curve, 0.9) == (1.6e10, "above")
    assert stats.flops_to_reach(curve, 0.3) == (1e9, "below")


def test_wilson_and_paired_bootstrap() -> None:
    low, high = stats.wilson(50, 100)
    assert low < 0.5 < high and high - low == pytest.approx(0.19, abs=0.01)
    diff, low, high = stats.paired_bootstrap([True] * 30 + [False] * 10, [True] * 20 + [False] * 20)
    assert diff == pytest.approx(0.25) and 0 < low < diff < high


def test_record_store_resumes(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "r.jsonl"
    store = RecordStore(path)
    row = {"phase": "grid", "config": "a", "budget": 1e9, "qid": "q1", "correct": True}
    store.add(row)
    again = RecordStore(path)
    assert ("grid", "a", 1e9, "q1") in again and again.phase("grid") == [row]


def test_record_store_never_resumes_from_records_of_other_models_or_questions(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "r.jsonl"
    row = {"phase": "grid", "config": "a", "budget": 1e9, "qid": "dev-0", "correct": True}
    RecordStore(path, {"generator": "g@1", "questions": "x"}).add(row)
    same = RecordStore(path, {"generator": "g@1", "questions": "x"})
    assert ("grid", "a", 1e9, "dev-0") in same and same.stale is None
    retrained = RecordStore(path, {"generator": "g@2", "questions": "x"})
    assert ("grid", "a", 1e9, "dev-0") not in retrained and retrained.stale is not None
    assert retrained.stale.read_text().count("dev-0") == 1  # kept aside, not lost


def test_matched_budget_is_the_papers_inference_multiplier() -> None:
    from bench.exchange import PretrainedModel, matched_budget
    from ttc_serve.models.cost import FlopsModel

    # No attention term, so FLOPs are 2*N per token, as in the paper's 6ND + 2ND accounting.
    n_s, n_l, d_s, d_l, tokens = 1_000, 14_000, 5_000_000, 4_000_000, 80
    small = PretrainedModel("s", FlopsModel(n_s, 0, 0), d_s)
    large = PretrainedModel("l", FlopsModel(n_l, 0, 0), d_l)
    for ratio in (0.16, 0.79, 22.0):
        budget = matched_budget(2.0 * n_l * tokens, tokens, ratio, small, large)
        d_inference = ratio * d_l
        multiplier = (6 * n_l * d_l - 6 * n_s * d_s + 2 * n_l * d_inference) / (2 * n_s * d_inference)
        assert budget / (2.0 * n_s * tokens) == pytest.approx(multiplier)
    # the more the large model is used, the less its pre-training costs per query
    budgets = [matched_budget(1e9, 80, r, small, large) for r in (0.16, 0.79, 22.0, 1e12)]
    assert budgets == sorted(budgets, reverse=True) and budgets[-1] == pytest.approx(1e9)
