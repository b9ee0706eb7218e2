"""Best-of-N weighted: N independent samples, PRM-scored; the answer with the largest summed score wins."""

from __future__ import annotations

from ttc_serve.router.selection import rank
from ttc_serve.router.strategies.base import StrategyContext, StrategyParams, StrategyResult
from ttc_serve.router.strategies.sampling import SampleCountParams, draw, min_sampling_flops
from ttc_serve.router.strategies.verdict import answer_key, verdict


class BestOfNParams(SampleCountParams):
    """``strategy_params`` of best-of-N weighted."""


class BestOfNWeighted:
    name: str = "best_of_n"
    params_model: type[StrategyParams] = BestOfNParams

    def scores(self, params: StrategyParams) -> bool:
        return True

    def min_flops(self, ctx: StrategyContext, params: StrategyParams) -> float:
        return min_sampling_flops(ctx, scored=True)

    async def run(self, ctx: StrategyContext, params: StrategyParams) -> StrategyResult:
        assert isinstance(params, BestOfNParams)
        candidates, cut_short = await draw(ctx, params.n, scored=True, aggregation=params.aggregation)
        key = await answer_key(ctx, [c.answer for c in candidates])
        # answers ranked by their summed PRM score, each shown by its highest-scored sample
        ranked = rank(candidates, lambda c: key(c.answer), lambda c: c.score or 0.0,
                      lambda group: max(group, key=lambda c: c.score or 0.0))
        return verdict(ranked, candidates, cut_short,
                       {"n": len(candidates), "aggregation": params.aggregation,
                        "n_requested": params.n})
