"""Independent sampling sized by the budget, shared by best-of-N weighted and majority voting.

A wave of samples is started only if its generation fits what remains in the worst case (every
sample running to ``max_tokens``): that is the guarantee. The PRM pass after it is planned at its
expected cost (the samples seen so far, else a full-length sample with a step every 4 tokens) and
checked against the real lengths once they are known; a sample the budget cannot score any more
scores 0 and so drops out of the weighted vote. Samples usually stop early, so further waves spend
what is left, until one more sample no longer fits or the wave limit is reached.
"""

from __future__ import annotations

import math

from pydantic import Field

from ttc_serve.router.budget import prm_tokens_bound
from ttc_serve.router.selection import (
    Aggregation,
    Scored,
    aggregate,
    extract_answer,
    majority,
    split_steps,
    weighted_best_of_n,
)
from ttc_serve.router.strategies.base import Candidate, StrategyContext, StrategyParams


class SampleCountParams(StrategyParams):
    """``strategy_params`` of the strategies that draw independent samples."""

    n: int | None = Field(default=None, ge=1, le=1024,
                          description="samples to draw; default: as many as the budget pays for")


def per_sample_worst(ctx: StrategyContext, scored: bool) -> float:
    costs, p, m = ctx.meter.costs, ctx.prompt_tokens, ctx.sampling.max_tokens
    worst = costs.sample_worst(p, m)
    if scored:
        worst += costs.score_worst(prm_tokens_bound(p, m, m))
    return worst


def per_sample_planned(ctx: StrategyContext, scored: bool, seen: list[Candidate]) -> float:
    """Generation at its worst case, the PRM pass at its expected cost."""
    costs, p, m = ctx.meter.costs, ctx.prompt_tokens, ctx.sampling.max_tokens
    planned = costs.sample_worst(p, m)
    if scored:
        shaped = [c for c in seen if c.steps]
        if shaped:
            planned += sum(costs.score_worst(_score_bound(ctx, c)) for c in shaped) / len(shaped)
        else:
            planned += costs.score_worst(prm_tokens_bound(p, m, max(1, m // 4)))
    return planned


def min_sampling_flops(ctx: StrategyContext, scored: bool) -> float:
    return ctx.meter.costs.generator.span(0, ctx.prompt_tokens) + per_sample_worst(ctx, scored)


def _score_bound(ctx: StrategyContext, candidate: Candidate) -> int:
    return prm_tokens_bound(ctx.prompt_tokens, candidate.tokens, len(candidate.steps))


async def score_candidates(ctx: StrategyContext, candidates: list[Candidate],
                           aggregation: Aggregation) -> None:
    """PRM-score, in one verifier call, every candidate with steps that the budget still pays for
    (in order) and that fits the verifier's context; the others score 0."""
    with_steps = [c for c in candidates if c.steps]
    if not with_steps:
        return
    meter = ctx.meter
    tokens = await meter.scoring_tokens([ctx.question] * len(with_steps), [c.steps for c in with_steps],
                                        [_score_bound(ctx, c) for c in with_steps])
    remaining, affordable, bounds, total = meter.ledger.remaining, [], [], 0.0
    for cand, count in zip(with_steps, tokens, strict=True):
        if not meter.scorable(count):
            continue
        cost = meter.costs.score_worst(count)
        if total + cost > remaining:
            break
        total += cost
        affordable.append(cand)
        bounds.append(count)
    if affordable:
        result = await meter.score([ctx.question] * len(affordable), [c.steps for c in affordable],
                                   bounds)
        for cand, scores in zip(affordable, result.step_scores, strict=True):
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
    cut_short = False
    for wave in range(sampling.max_waves):
        want = sampling.max_samples_per_call if limit is None else limit - len(candidates)
        if want <= 0:
            break
        unit = per_sample_planned(ctx, scored, candidates)
        affordable = math.floor((ledger.remaining - prompt_cost) / unit)
        n = min(want, affordable, sampling.max_samples_per_call)
        if n < 1:
            cut_short = limit is not None
            break
        seed = None if sampling.seed is None else sampling.seed + wave * 100_003
        result = await ctx.meter.generate(sampling.request([ctx.prompt], n, seed=seed), [ctx.prompt_tokens])
        new = [Candidate(text=c.text, finish_reason=c.finish_reason, tokens=c.tokens,
                         answer=extract_answer(c.text),
                         steps=split_steps(c.text, sampling.step_delimiter), logprobs=c.logprobs)
               for c in result.completions[0]]
        if scored:
            await score_candidates(ctx, new, aggregation)
        candidates.extend(new)
        ctx.report(leading_answer(candidates, scored))
    return candidates, cut_short


def leading_answer(candidates: list[Candidate], scored: bool) -> str | None:
    """The answer the vote would give now (exact match: progress is a glimpse, not the verdict)."""
    if scored:
        return weighted_best_of_n([Scored(c.answer, c.score or 0.0) for c in candidates])
    return majority([c.answer for c in candidates])
