"""The reproducibility check: identical weights settle it, else the tables must agree within noise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer

from bench import reproduce


def _tables(pass1: float, majority: float, greedy: float) -> dict[str, object]:
    return {"questions": 600,
            "small": {"levels": {"2": {"questions": 120, "pass@1": pass1, "majority@16": majority,
                                       "revision_pass@1_by_attempt": [pass1, pass1 / 2]}}},
            "large": {"levels": {"2": {"greedy": greedy, "pass@1": greedy}}}}


def _checkpoint(root: Path, name: str, weights: bytes) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "model.safetensors").write_bytes(weights)


def test_the_bound_is_two_runs_of_binomial_noise() -> None:
    # p = .5 over 120 questions: 1.96 * sqrt(2 * .25 / 120) = .1265
    assert reproduce.within_noise(0.45, 0.55, 120) == pytest.approx((0.10, True))
    assert reproduce.within_noise(0.40, 0.55, 120)[1] is False
    assert reproduce.within_noise(1.0, 1.0, 120) == (0.0, True)


def test_compare_tables_checks_every_rate_both_reports_hold() -> None:
    rows = reproduce.compare_tables(_tables(0.33, 0.47, 0.54), _tables(0.35, 0.20, 0.54))
    by_metric = {(r["model"], r["metric"]): r for r in rows}
    assert set(by_metric) == {("small", "pass@1"), ("small", "majority@16"),
                              ("small", "revision attempt 1"), ("small", "revision attempt 2"),
                              ("large", "greedy"), ("large", "pass@1")}
    assert by_metric[("small", "pass@1")]["within_noise"]
    assert not by_metric[("small", "majority@16")]["within_noise"]


def test_identical_weights_pass_without_tables(tmp_path: Path) -> None:
    _checkpoint(tmp_path / "shipped", "prm", b"same")
    _checkpoint(tmp_path / "rebuilt", "prm", b"same")
    reproduce.main(tmp_path / "rebuilt", tmp_path / "shipped", tmp_path / "none.json",
                   tmp_path / "reproduce.json")
    report = json.loads((tmp_path / "reproduce.json").read_text())
    assert report["checkpoints"]["prm"]["identical_weights"] is True


def test_different_weights_need_measured_tables_within_noise(tmp_path: Path) -> None:
    _checkpoint(tmp_path / "shipped", "generator-small", b"one")
    _checkpoint(tmp_path / "rebuilt", "generator-small", b"two")
    shipped_tables = tmp_path / "models.json"
    shipped_tables.write_text(json.dumps(_tables(0.33, 0.47, 0.54)))
    with pytest.raises(typer.Exit):  # nothing measured on the rebuild yet
        reproduce.main(tmp_path / "rebuilt", tmp_path / "shipped", shipped_tables, tmp_path / "out.json")
    (tmp_path / "rebuilt" / "models.json").write_text(json.dumps(_tables(0.31, 0.44, 0.55)))
    reproduce.main(tmp_path / "rebuilt", tmp_path / "shipped", shipped_tables, tmp_path / "out.json")
    (tmp_path / "rebuilt" / "models.json").write_text(json.dumps(_tables(0.31, 0.20, 0.55)))
    with pytest.raises(typer.Exit):
        reproduce.main(tmp_path / "rebuilt", tmp_path / "shipped", shipped_tables, tmp_path / "out.json")
