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


def verdict(ranked: list[Candidate], candidates: list[Candidate], cut_short: bool,
            params: dict[str, Any]) -> StrategyResult:
    """``ranked``: one candidate per distinct answer, best first (``selection.rank``)."""
    outcome = finish_reason(ranked[0].answer, cut_short)
    return StrategyResult(
        choices=[c.choice() for c in ranked], compute_finish_reason=outcome,
        params={k: v for k, v in params.items() if v is not None},
        samples=len(candidates), trace=[c.trace() for c in candidates])


def finish_reason(answer: str | None, cut_short: bool) -> str:
    """compute.finish_reason: the budget cut the strategy short, else whether it found an answer."""
    return "budget_exhausted" if cut_short else "answered" if answer is not None else "no_answer"
