"""The calibrated policy artifact and the difficulty binning: pure, so tested directly."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from ttc_serve.router.difficulty import bin_of, fit_thresholds
from ttc_serve.router.policy import CalibratedPolicy, ModelIds, PolicyMismatch
from ttc_serve.router.strategies import STRATEGIES


def make_policy(grid: tuple[float, ...] = (1e9, 4e9, 1.6e10)) -> CalibratedPolicy:
    names = sorted(STRATEGIES)
    return CalibratedPolicy.model_validate({
        "models": {"generator": "generator-small@abc", "verifier": "prm@def"},
        "difficulty": {"samples": 4, "thresholds": [0.1, 0.3, 0.5, 0.7]},
        "table": {b: [{"budget": g, "strategy": names[(b + i) % len(names)],
                       "params": {"aggregation": "last"}, "accuracy": 0.5}
                      for i, g in enumerate(grid)] for b in range(1, 6)}})


def test_policy_round_trips_through_json(tmp_path: Path) -> None:
    policy = make_policy()
    policy.save(tmp_path / "p.json")
    assert CalibratedPolicy.load(tmp_path / "p.json") == policy


@given(bin_=st.one_of(st.none(), st.integers(-10, 10)), budget=st.floats(1e-3, 1e30))
def test_choose_is_total_and_picks_the_largest_grid_point_covered(bin_: int | None, budget: float) -> None:
    policy = make_policy()
    strategy, params = policy.choose(bin_, budget)
    assert strategy in STRATEGIES and isinstance(params, dict)
    b = 3 if bin_ is None else min(5, max(1, bin_))
    covered = [p for p in policy.table[b] if p.budget <= budget] or policy.table[b][:1]
    assert strategy == covered[-1].strategy


@given(budget=st.floats(1e-3, 1e30))
def test_the_choice_depends_on_difficulty_exactly_where_bins_differ(budget: float) -> None:
    varied = make_policy()  # strategies rotate over the bins at every grid point
    assert varied.depends_on_difficulty(budget)
    same = varied.model_copy(update={"table": {b: varied.table[1] for b in varied.table}})
    assert not same.depends_on_difficulty(budget)


def test_choose_returns_a_copy_of_the_params() -> None:
    policy = make_policy()
    _, params = policy.choose(1, 2e9)
    params["n"] = 3
    assert "n" not in policy.choose(1, 2e9)[1]


def test_a_policy_for_other_models_is_refused_with_a_clear_message() -> None:
    policy = make_policy()
    policy.check_models(ModelIds(generator="generator-small@abc", verifier="prm@def"))
    expected = r"fitted for generator generator-small@abc.*ttc-serve calibrate"
    with pytest.raises(PolicyMismatch, match=expected):
        policy.check_models(ModelIds(generator="generator-small@999", verifier="prm@def"))


@pytest.mark.parametrize("change", [
    {"version": 2},
    {"difficulty": {"samples": 4, "thresholds": [0.5, 0.1]}},
    {"table": {1: []}},
    {"unknown": 1},
])
def test_malformed_policies_are_rejected(change: dict[str, object]) -> None:
    raw = make_policy().model_dump(mode="json") | change
    with pytest.raises(ValidationError):
        CalibratedPolicy.model_validate(raw)


def test_bins_run_from_easiest_to_hardest() -> None:
    thresholds = [0.1, 0.3, 0.5, 0.7]
    assert [bin_of(s, thresholds) for s in (0.9, 0.7, 0.6, 0.4, 0.2, 0.05)] == [1, 1, 2, 3, 4, 5]


@given(st.lists(st.floats(0, 1), min_size=5, max_size=300))
def test_quantile_thresholds_split_scores_into_near_equal_bins(scores: list[float]) -> None:
    thresholds = fit_thresholds(scores)
    assert thresholds == sorted(thresholds) and len(thresholds) == 4
    bins = [bin_of(s, thresholds) for s in scores]
    if len(set(scores)) == len(scores):  # no ties: every bin gets its fifth (give or take one)
        for b in range(1, 6):
            assert abs(bins.count(b) - len(scores) / 5) <= 1.5
    if min(scores) < max(scores):  # ties at the bottom fill the hardest bin, not the one above it
        assert bins[scores.index(min(scores))] == 5


def test_unsolved_questions_fill_the_hardest_oracle_bin() -> None:
    rates = [0.0] * 27 + [i / 53 for i in range(1, 54)]  # as on the dev split: 27 of 80 never solved
    thresholds = fit_thresholds(rates)
    bins = [bin_of(r, thresholds) for r in rates]
    assert bins[:27] == [5] * 27 and all(b < 5 for b in bins[27:])


def test_fingerprints_follow_content_not_paths(tmp_path: Path) -> None:
    from ttc_serve.models.identity import fingerprint, same_model

    def checkpoint(name: str, tokenizer: str, weights: bytes | None = None) -> Path:
        directory = tmp_path / name
        directory.mkdir(parents=True)
        (directory / "config.json").write_text('{"hidden_size": 8}')
        (directory / "tokenizer_config.json").write_text(tokenizer)
        if weights is not None:
            (directory / "model.safetensors").write_bytes(weights)
        return directory

    # the same files mounted elsewhere are the same model
    assert same_model(fingerprint(checkpoint("a/generator", "{}")), fingerprint(checkpoint("b/gen", "{}")))
    # two fine-tunes of one architecture, config only: the tokenizer content tells them apart
    assert not same_model(fingerprint(checkpoint("c/gen", '{"chat_template": "x"}')),
                          fingerprint(checkpoint("d/gen", '{"chat_template": "y"}')))
    # with weights, the weights decide
    assert not same_model(fingerprint(checkpoint("e/gen", "{}", b"1")),
                          fingerprint(checkpoint("f/gen", "{}", b"2")))
