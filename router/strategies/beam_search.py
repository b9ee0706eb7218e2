"""PRM beam search (Snell et al. §5): N candidates, keep the top N/M by PRM score each step, expand
each survivor with M samples of the next step; best-of-N weighted over the finished beams."""

from __future__ import annotations

from pydantic import Field, model_validator

from router.strategies.base import StrategyContext, StrategyParams, StrategyResult
from router.strategies.tree_search import (
    Node,
    SearchConfig,
    Survivors,
    TreeSearch,
    keep_best_per_parent,
    keep_top,
    select_answer,
    size_n,
)


class TreeSearchParams(StrategyParams):
    n: int | None = Field(None, ge=1, le=1024, description="candidates; default: what the budget pays for")
    beam_width: int = Field(4, ge=1, le=64, description="M: children per survivor")
    max_rounds: int = Field(40, ge=1, le=100, description="step rounds before the search stops")
    step_tokens: int = Field(32, ge=1, le=4096, description="max tokens of one step")
    expected_steps: int = Field(8, ge=1, le=100, description="steps assumed when sizing N from the budget")

    @model_validator(mode="after")
    def _n_holds_a_beam(self) -> TreeSearchParams:
        if self.n is not None and self.n < self.beam_width:
            raise ValueError(f"n ({self.n}) must be at least beam_width ({self.beam_width})")
        return self


class LookaheadParams(TreeSearchParams):
    lookahead: int = Field(1, ge=1, le=8, description="k: greedy rollout steps before scoring")


class _StepSearch:
    """Shared body of the tree-search strategies; subclasses set the survivor rule."""

    name: str = ""
    params_model: type[StrategyParams] = TreeSearchParams
    survivors: Survivors = staticmethod(keep_top)

    def _config(self, ctx: StrategyContext, params: TreeSearchParams, n: int) -> SearchConfig:
        width = params.beam_width
        return SearchConfig(n=n, width=width, max_rounds=params.max_rounds,
                            step_tokens=min(params.step_tokens, ctx.sampling.max_tokens),
                            aggregation=params.aggregation, survivors=type(self).survivors,
                            keep=max(1, n // width), lookahead=getattr(params, "lookahead", 0))

    def min_flops(self, ctx: StrategyContext, params: StrategyParams) -> float:
        assert isinstance(params, TreeSearchParams)
        width = params.beam_width
        return TreeSearch(ctx, self._config(ctx, params, width)).round_worst([Node()], width)

    async def run(self, ctx: StrategyContext, params: StrategyParams) -> StrategyResult:
        assert isinstance(params, TreeSearchParams)
        config = self._config(ctx, params, params.beam_width)
        n = params.n or size_n(ctx, params.beam_width, config.step_tokens, params.expected_steps,
                               config.lookahead)
        search = TreeSearch(ctx, self._config(ctx, params, max(n, params.beam_width)))
        finished, active, cut_short = await search.run()
        sizes = {"n": search.first_n, "n_planned": search.config.n, "beam_width": params.beam_width,
                 "keep": search.config.keep,
                 "max_rounds": params.max_rounds, "step_tokens": search.config.step_tokens,
                 "aggregation": params.aggregation, "n_requested": params.n}
        if search.config.lookahead:
            sizes["lookahead"] = search.config.lookahead
        result = select_answer(finished, active, cut_short, {k: v for k, v in sizes.items() if v is not None},
                               search.trace)
        result.params["rounds"] = search.rounds
        return result


class BeamSearch(_StepSearch):
    name = "beam_search"


class DiverseVerifierTreeSearch(_StepSearch):
    """DVTS (beyond the paper): N/M independent subtrees, each keeping its PRM-best child per step."""

    name = "dvts"
    survivors = staticmethod(keep_best_per_parent)


class LookaheadSearch(_StepSearch):
    """Beam search whose step score is the PRM score after a greedy k-step rollout (charged)."""

    name = "lookahead"
    params_model: type[StrategyParams] = LookaheadParams
