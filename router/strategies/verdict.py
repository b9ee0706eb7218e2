"""Turning a chosen candidate into a StrategyResult (shared by the selection-based strategies)."""

from __future__ import annotations

from typing import Any

from ttc_serve.router.strategies.base import Candidate, StrategyResult


def verdict(chosen: Candidate, candidates: list[Candidate], cut_short: bool,
            params: dict[str, Any]) -> StrategyResult:
    outcome = "budget_exhausted" if cut_short else "answered" if chosen.answer is not None else "no_answer"
    return StrategyResult(
        text=chosen.text, choice_finish_reason=chosen.finish_reason, answer=chosen.answer,
        compute_finish_reason=outcome, params={k: v for k, v in params.items() if v is not None},
        samples=len(candidates), trace=[c.trace() for c in candidates])
