"""Majority voting: N independent samples, no verifier; the most frequent final answer wins."""

from __future__ import annotations

from ttc_serve.router.selection import rank
from ttc_serve.router.strategies.base import StrategyContext, StrategyParams, StrategyResult
from ttc_serve.router.strategies.sampling import SampleCountParams, draw, min_sampling_flops
from ttc_serve.router.strategies.verdict import answer_key, verdict


class MajorityParams(SampleCountParams):
    """``strategy_params`` of majority voting."""


class MajorityVote:
    name: str = "majority"
    params_model: type[StrategyParams] = MajorityParams

    def scores(self, params: StrategyParams) -> bool:
        return False

    def min_flops(self, ctx: StrategyContext, params: StrategyParams) -> float:
        return min_sampling_flops(ctx, scored=False)

    async def run(self, ctx: StrategyContext, params: StrategyParams) -> StrategyResult:
        assert isinstance(params, MajorityParams)
        candidates, cut_short = await draw(ctx, params.n, scored=False)
        key = await answer_key(ctx, [c.answer for c in candidates])
        # answers ranked by their vote count, each shown by its first sample
        ranked = rank(candidates, lambda c: key(c.answer), lambda c: 1.0, lambda group: group[0])
        return verdict(ranked, candidates, cut_short,
                       {"n": len(candidates), "n_requested": params.n})
