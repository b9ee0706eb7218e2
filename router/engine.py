"""The engine: one completion request -> budget ledger -> (difficulty) -> strategy -> result.

Seams for what comes next: ``difficulty`` (a predictor that spends from the same ledger and hands
its samples to the strategy) and ``policy`` (maps a difficulty bin and the remaining budget to a
strategy and its parameters). Until a calibrated policy ships, ``auto`` runs best-of-N weighted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from pydantic import ValidationError

from models.check_format import CheckFormat
from models.protocols import Generator, Verifier
from models.revision_format import RevisionFormat
from router.budget import CostModels, InsufficientBudget, Ledger, Meter
from router.errors import BudgetTooSmall, DeadlineExceeded, InvalidParams, PromptTooLong, UnknownStrategy
from router.strategies import STRATEGIES
from router.strategies.base import Candidate, SamplingConfig, StrategyContext, StrategyResult, parse_params

AUTO = "auto"


@dataclass(frozen=True)
class Difficulty:
    score: float
    bin: int
    samples: int
    candidates: list[Candidate] = field(default_factory=list)


class DifficultyPredictor(Protocol):
    async def predict(self, ctx: StrategyContext) -> Difficulty: ...


class Policy(Protocol):
    def choose(self, difficulty_bin: int | None, budget: float) -> tuple[str, dict[str, Any]]: ...

    def depends_on_difficulty(self, budget: float) -> bool: ...


@dataclass(frozen=True)
class FixedPolicy:
    """The policy until a calibrated one exists: one strategy for every bin and budget."""

    strategy: str = "best_of_n"

    def choose(self, difficulty_bin: int | None, budget: float) -> tuple[str, dict[str, Any]]:
        return self.strategy, {}

    def depends_on_difficulty(self, budget: float) -> bool:
        return False


@dataclass(frozen=True)
class EngineRequest:
    prompt: str
    flops_budget: float
    strategy: str = AUTO
    strategy_params: Mapping[str, Any] | None = None
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
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
                 policy: Policy | None = None, difficulty: DifficultyPredictor | None = None,
                 revision: RevisionFormat | None = None, check: CheckFormat | None = None):
        self.generator = generator
        self.verifier = verifier
        self.costs = costs
        self.policy = policy or FixedPolicy()
        self.difficulty = difficulty
        self.revision = revision or RevisionFormat()
        self.check = check  # the generator's check form, if it has one (check-and-repair revisions)

    async def complete(self, request: EngineRequest) -> EngineResult:
        if request.strategy != AUTO and request.strategy not in STRATEGIES:
            raise UnknownStrategy(request.strategy, [AUTO, *STRATEGIES])
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
        if (request.strategy == AUTO and self.difficulty is not None
                and self.policy.depends_on_difficulty(ctx.meter.ledger.remaining)):
            difficulty = await self.difficulty.predict(ctx)
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
        return replace(request.sampling, max_tokens=min(request.sampling.max_tokens, room))
