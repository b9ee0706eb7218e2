"""Turning a chosen candidate into a StrategyResult (shared by the selection-based strategies)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from ttc_serve.router.selection import AnswerKey, answer_classes
from ttc_serve.router.strategies.base import Candidate, StrategyContext, StrategyResult


async def answer_key(ctx: StrategyContext, answers: Sequence[str | None]) -> AnswerKey:
    """The request's voting key over these answers (math comparison off the event loop)."""
    if ctx.sampling.answer_match == "exact":
        return answer_classes(answers, "exact")
    return await asyncio.to_thread(answer_classes, answers, ctx.sampling.answer_match)


def verdict(chosen: Candidate, candidates: list[Candidate], cut_short: bool,
            params: dict[str, Any]) -> StrategyResult:
    outcome = "budget_exhausted" if cut_short else "answered" if chosen.answer is not None else "no_answer"
    return StrategyResult(
        text=chosen.text, choice_finish_reason=chosen.finish_reason, answer=chosen.answer,
        compute_finish_reason=outcome, params={k: v for k, v in params.items() if v is not None},
        samples=len(candidates), trace=[c.trace() for c in candidates])
