"""The FLOPs cost model against an independent count: torch's FLOP counter on the HF models, for a
real model nobody here trained (SmolLM2-135M-Instruct's config) and the embedded ones."""

from __future__ import annotations

import json
from pathlib import Path

from bench import flops_check

ROOT = Path(__file__).resolve().parent.parent


def test_the_cost_model_is_within_five_percent_of_torchs_count() -> None:
    table = flops_check.rows()
    assert {r["model"] for r in table} == set(flops_check.CONFIGS)
    assert any(r["context"] >= 2048 for r in table)  # a long context too
    for row in table:
        assert 0.95 <= row["prompt_ratio"] <= 1.05, row
        assert 0.95 <= row.get("decode_ratio", 1.0) <= 1.05, row
    committed = json.loads(flops_check.RESULTS.read_text())
    assert [(r["model"], r["context"]) for r in committed] == [(r["model"], r["context"]) for r in table]
    assert flops_check.markdown(committed) in (ROOT / "docs" / "serving.md").read_text()
