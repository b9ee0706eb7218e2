"""PRM beam search (Snell et al. §5): N candidates, keep the top N/M by PRM score each step, expand
each survivor with M samples of the next step; best-of-N weighted over the finished beams."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field, model_validator

from ttc_serve.router.selection import extract_answer
from ttc_serve.router.strategies.base import StrategyContext, StrategyParams, StrategyResult
from ttc_serve.router.strategies.tree_search import (
    Node,
    SearchConfig,
    Survivors,
    TreeSearch,
    expected_shape,
    keep_best_per_parent,
    keep_top,
    reused_node,
    select_answer,
    size_n,
)
from ttc_serve.router.strategies.verdict import answer_key

SQRT_MIN_WIDTH = 2


class TreeSearchParams(StrategyParams):
    n: int | None = Field(None, ge=1, le=1024, description="candidates; default: what the budget pays for")
    beam_width: Annotated[int, Field(ge=1, le=64)] | Literal["sqrt"] = Field(
        4, description="M: children per survivor; 'sqrt': the square root of N (the "
        "paper's other setting), N as given or as the budget pays for")
    max_rounds: int = Field(40, ge=1, le=100, description="step rounds before the search stops")
    step_tokens: int = Field(32, ge=1, le=4096, description="max tokens of one step")
    expected_steps: int = Field(8, ge=1, le=100, description="steps assumed when sizing N from the budget "
                                "(used unless difficulty samples show the real shape)")
    expected_step_tokens: int | None = Field(
        None, ge=1, le=4096, description="tokens per step assumed when sizing N; default: what the "
        "difficulty samples show, else step_tokens / 2")

    @model_validator(mode="after")
    def _n_holds_a_beam(self) -> TreeSearchParams:
        if self.n is not None and isinstance(self.beam_width, int) and self.n < self.beam_width:
            raise ValueError(f"n ({self.n}) must be at least beam_width ({self.beam_width})")
        return self


class LookaheadParams(TreeSearchParams):
    lookahead: int = Field(1, ge=1, le=8, description="k: greedy rollout steps before scoring")


class _StepSearch:
    """Shared body of the tree-search strategies; subclasses set the survivor rule."""

    name: str = ""
    params_model: type[StrategyParams] = TreeSearchParams
    survivors: Survivors = staticmethod(keep_top)

    def _config(self, ctx: StrategyContext, params: TreeSearchParams, n: int, width: int,
                expected_step_tokens: float = 0.0) -> SearchConfig:
        return SearchConfig(n=n, width=width, max_rounds=params.max_rounds,
                            step_tokens=min(params.step_tokens, ctx.sampling.max_tokens),
                            aggregation=params.aggregation, survivors=type(self).survivors,
                            keep=max(1, n // width), lookahead=getattr(params, "lookahead", 0),
                            expected_step_tokens=expected_step_tokens)

    def scores(self, params: StrategyParams) -> bool:
        return True

    def min_flops(self, ctx: StrategyContext, params: StrategyParams) -> float:
        assert isinstance(params, TreeSearchParams)
        width = params.beam_width if isinstance(params.beam_width, int) else SQRT_MIN_WIDTH
        # the search can shrink to a single first sample when the budget is that small
        return TreeSearch(ctx, self._config(ctx, params, width, width)).round_worst([Node()], 1)

    def _sizes(self, ctx: StrategyContext, params: TreeSearchParams, steps: float,
               step_len: float) -> tuple[int, int, bool]:
        """(N, M, capped): N as given or as the budget pays for, a multiple of M. What a budget buys
        stops at ``max_samples_per_call`` candidates (capped: True): each round sends one HTTP call
        per surviving beam, and an unbounded N made one request's calls swamp the client."""
        step_tokens = min(params.step_tokens, ctx.sampling.max_tokens)
        lookahead = getattr(params, "lookahead", 0)
        cap = ctx.sampling.max_samples_per_call
        width = params.beam_width if isinstance(params.beam_width, int) else 1
        affordable = params.n or size_n(ctx, width, step_len, steps, lookahead, step_tokens)
        capped = params.n is None and affordable > cap
        n = min(affordable, cap) if params.n is None else affordable
        if isinstance(params.beam_width, int):
            return max((n // width) * width, width), width, capped
        width = max(SQRT_MIN_WIDTH, round(math.sqrt(n)))
        return max(width, (n // width) * width), width, capped

    async def run(self, ctx: StrategyContext, params: StrategyParams) -> StrategyResult:
        assert isinstance(params, TreeSearchParams)
        step_tokens = min(params.step_tokens, ctx.sampling.max_tokens)
        steps, step_len = expected_shape(ctx.reuse, step_tokens, params.expected_steps,
                                         params.expected_step_tokens)
        n, width, capped = self._sizes(ctx, params, steps, step_len)
        search = TreeSearch(ctx, self._config(ctx, params, n, width, step_len))
        finished, active, cut_short = await search.run()
        # the difficulty samples, already paid for, join the final vote (traced as round -1)
        reused = [reused_node(c, params.aggregation) for c in ctx.reuse if c.steps]
        search.record(reused, -1)
        finished += reused
        sizes: dict[str, object] = {
            "n": search.first_n, "n_planned": n, "beam_width": width, "keep": search.config.keep,
            "max_rounds": params.max_rounds, "step_tokens": step_tokens,
            "aggregation": params.aggregation, "n_requested": params.n,
            "planned_steps": round(steps, 2), "planned_step_tokens": round(step_len, 2)}
        if params.beam_width == "sqrt":
            sizes["beam_width_rule"] = "sqrt"
        if capped:
            sizes["n_capped"] = True
        if search.config.lookahead:
            sizes["lookahead"] = search.config.lookahead
        key = await answer_key(ctx, [extract_answer(n.text) for n in finished or active])
        result = select_answer(finished, active, cut_short, {k: v for k, v in sizes.items() if v is not None},
                               search.trace, key)
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
