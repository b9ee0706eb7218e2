"""Majority voting: N independent samples, no verifier; the most frequent final answer wins."""

from __future__ import annotations

from pydantic import Field

from router.selection import majority
from router.strategies.base import StrategyContext, StrategyParams, StrategyResult
from router.strategies.sampling import draw, min_sampling_flops
from router.strategies.verdict import verdict


class MajorityParams(StrategyParams):
    n: int | None = Field(default=None, ge=1, le=1024,
                          description="samples to draw; default: as many as the budget pays for")


class MajorityVote:
    name: str = "majority"
    params_model: type[StrategyParams] = MajorityParams

    def min_flops(self, ctx: StrategyContext, params: StrategyParams) -> float:
        return min_sampling_flops(ctx, scored=False)

    async def run(self, ctx: StrategyContext, params: StrategyParams) -> StrategyResult:
        assert isinstance(params, MajorityParams)
        candidates, cut_short = await draw(ctx, params.n, scored=False)
        answer = majority([c.answer for c in candidates])
        chosen = next((c for c in candidates if c.answer == answer), candidates[0])
        return verdict(chosen, candidates, cut_short,
                       {"n": len(candidates), "n_requested": params.n})
