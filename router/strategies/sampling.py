"""Independent sampling sized by the budget, shared by best-of-N weighted and majority voting.

The first wave draws as many samples as the budget pays for in the worst case (each one running to
``max_tokens``); samples usually stop early, so further waves spend what is left, until one more
sample no longer fits or the wave limit is reached.
"""

from __future__ import annotations

import math

from models.protocols import GenerationRequest
from router.budget import prm_tokens_bound
from router.selection import Aggregation, aggregate, extract_answer, split_steps
from router.strategies.base import Candidate, StrategyContext


def per_sample_worst(ctx: StrategyContext, scored: bool) -> float:
    costs, p, m = ctx.meter.costs, ctx.prompt_tokens, ctx.sampling.max_tokens
    worst = costs.sample_worst(p, m)
    if scored:
        worst += costs.score_worst(prm_tokens_bound(p, m, m))
    return worst


def min_sampling_flops(ctx: StrategyContext, scored: bool) -> float:
    return ctx.meter.costs.generator.span(0, ctx.prompt_tokens) + per_sample_worst(ctx, scored)


async def score_candidates(ctx: StrategyContext, candidates: list[Candidate],
                           aggregation: Aggregation) -> None:
    """PRM-score every candidate with steps in one verifier call; those without steps score 0."""
    todo = [c for c in candidates if c.steps]
    if todo:
        bounds = [prm_tokens_bound(ctx.prompt_tokens, c.tokens, len(c.steps)) for c in todo]
        result = await ctx.meter.score([ctx.prompt] * len(todo), [c.steps for c in todo], bounds)
        for cand, scores in zip(todo, result.step_scores, strict=True):
            cand.step_scores = scores
    for cand in candidates:
        cand.score = aggregate(cand.step_scores or [], aggregation)


async def draw(ctx: StrategyContext, limit: int | None, scored: bool,
               aggregation: Aggregation = "last") -> tuple[list[Candidate], bool]:
    """Sample up to ``limit`` candidates (None: as many as the budget pays for), scoring them if asked.
    Returns the candidates (reused ones first) and whether the budget cut the draw short."""
    candidates = list(ctx.reuse)
    if scored:
        unscored = [c for c in candidates if c.step_scores is None]
        if unscored:
            await score_candidates(ctx, unscored, aggregation)
        for cand in candidates:
            cand.score = aggregate(cand.step_scores or [], aggregation)
    ledger, sampling = ctx.meter.ledger, ctx.sampling
    prompt_cost = ctx.meter.costs.generator.span(0, ctx.prompt_tokens)
    unit = per_sample_worst(ctx, scored)
    cut_short = False
    for wave in range(sampling.max_waves):
        want = sampling.max_samples_per_call if limit is None else limit - len(candidates)
        if want <= 0:
            break
        affordable = math.floor((ledger.remaining - prompt_cost) / unit)
        n = min(want, affordable, sampling.max_samples_per_call)
        if n < 1:
            cut_short = limit is not None
            break
        seed = None if sampling.seed is None else sampling.seed + wave * 100_003
        result = await ctx.meter.generate(GenerationRequest(
            prompts=[ctx.prompt], n=n, max_tokens=sampling.max_tokens,
            temperature=sampling.temperature, top_p=sampling.top_p, seed=seed),
            [ctx.prompt_tokens])
        new = [Candidate(text=c.text, finish_reason=c.finish_reason, tokens=c.tokens,
                         answer=extract_answer(c.text),
                         steps=split_steps(c.text, sampling.step_delimiter))
               for c in result.completions[0]]
        if scored:
            await score_candidates(ctx, new, aggregation)
        candidates.extend(new)
    return candidates, cut_short
