"""The engine: one completion request -> budget ledger -> (difficulty) -> strategy -> result.

``auto`` asks the policy which strategy fits the remaining budget; where the policy's choice depends
on the prompt's difficulty, the difficulty predictor first spends from the same ledger and hands its
samples to the chosen strategy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from pydantic import ValidationError

from ttc_serve.models.check_format import CheckFormat
from ttc_serve.models.protocols import Generator, Verifier
from ttc_serve.models.revision_format import RevisionFormat
from ttc_serve.router.budget import CostModels, InsufficientBudget, Ledger, Meter
from ttc_serve.router.difficulty import Difficulty, DifficultyPredictor
from ttc_serve.router.errors import (
    BudgetTooSmall,
    DeadlineExceeded,
    InvalidParams,
    PromptTooLong,
    UnknownStrategy,
)
from ttc_serve.router.policy import FixedPolicy, Policy
from ttc_serve.router.strategies import STRATEGIES
from ttc_serve.router.strategies.base import SamplingConfig, StrategyContext, StrategyResult, parse_params

AUTO = "auto"
STRATEGY_NAMES = (AUTO, *STRATEGIES)


@dataclass(frozen=True)
class EngineRequest:
    prompt: str
    flops_budget: float
    strategy: str = AUTO
    strategy_params: Mapping[str, Any] | None = None
    sampling: SamplingConfig | None = None  # None: the engine's defaults
    deadline_s: float | None = None


@dataclass
class EngineResult:
    strategy: str
    result: StrategyResult
    ledger: Ledger
    prompt_tokens: int
    difficulty: Difficulty | None


class Engine:
    def __init__(self, generator: Generator, verifier: Verifier, costs: CostModels,
                 policy: Policy | None = None, difficulty_predictor: DifficultyPredictor | None = None,
                 revision: RevisionFormat | None = None, check: CheckFormat | None = None,
                 sampling: SamplingConfig | None = None):
        self.generator = generator
        self.verifier = verifier
        self.costs = costs
        self.policy = policy or FixedPolicy()
        self.difficulty_predictor = difficulty_predictor
        # what a request that sets no sampling gets (the deployment's defaults)
        self.sampling = sampling or SamplingConfig()
        self.revision = revision or RevisionFormat()
        self.check = check  # the generator's check form, if it has one (check-and-repair revisions)

    async def complete(self, request: EngineRequest) -> EngineResult:
        if request.strategy != AUTO and request.strategy not in STRATEGIES:
            raise UnknownStrategy(request.strategy, list(STRATEGY_NAMES))
        ctx = await self.context(request)
        try:
            async with asyncio.timeout(request.deadline_s):
                return await self._run(request, ctx, ctx.prompt_tokens)
        except TimeoutError as exc:
            raise DeadlineExceeded(request.deadline_s or 0.0) from exc

    async def context(self, request: EngineRequest) -> StrategyContext:
        """A fresh ledger and metered model access for one request (its prompt counted, max_tokens
        fitted to the models' context)."""
        prompt_tokens = await self.generator.count_tokens(request.prompt)
        sampling = self._fit_context(request, prompt_tokens)
        meter = Meter(Ledger(budget=request.flops_budget), self.generator, self.verifier, self.costs)
        return StrategyContext(prompt=request.prompt, prompt_tokens=prompt_tokens, meter=meter,
                               sampling=sampling, revision=self.revision, check=self.check)

    async def _run(self, request: EngineRequest, ctx: StrategyContext, prompt_tokens: int) -> EngineResult:
        difficulty = None
        # The estimate is worth its FLOPs only where the policy's choice turns on it; elsewhere the
        # whole budget goes to the one configuration every bin would get.
        if (request.strategy == AUTO and self.difficulty_predictor is not None
                and self.policy.depends_on_difficulty(ctx.meter.ledger.remaining)):
            difficulty = await self.difficulty_predictor.predict(ctx)
            ctx.reuse = list(difficulty.candidates)
        name, params_raw = (request.strategy, request.strategy_params)
        if name == AUTO:
            name, chosen = self.policy.choose(difficulty.bin if difficulty else None,
                                              ctx.meter.ledger.remaining)
            params_raw = {**chosen, **(request.strategy_params or {})}
        strategy = STRATEGIES[name]
        try:
            params = parse_params(strategy, params_raw)
        except ValidationError as exc:
            raise InvalidParams(name, exc) from exc
        minimum = strategy.min_flops(ctx, params)
        if minimum > ctx.meter.ledger.remaining and not ctx.reuse:
            raise BudgetTooSmall(request.flops_budget, minimum, name)
        try:
            result = await strategy.run(ctx, params)
        except InsufficientBudget as exc:  # not even one complete candidate could be paid for
            raise BudgetTooSmall(request.flops_budget, max(minimum, exc.needed), name) from exc
        return EngineResult(strategy=name, result=result, ledger=ctx.meter.ledger,
                            prompt_tokens=prompt_tokens, difficulty=difficulty)

    def _fit_context(self, request: EngineRequest, prompt_tokens: int) -> SamplingConfig:
        """Cap max_tokens so that prompt + completion fits the generator, and the scored solution
        (with one step tag per step) fits the PRM."""
        room_generator = self.generator.max_model_len - prompt_tokens
        room_verifier = (self.verifier.max_model_len - prompt_tokens - 2) // 2
        room = min(room_generator, room_verifier)
        if room < 1:
            limit = min(self.generator.max_model_len, self.verifier.max_model_len // 2)
            raise PromptTooLong(prompt_tokens, limit)
        sampling = request.sampling or self.sampling
        return replace(sampling, max_tokens=min(sampling.max_tokens, room))
