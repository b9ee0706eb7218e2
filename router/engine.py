"""The engine: one completion request -> budget ledger -> (difficulty) -> strategy -> result.

``auto`` asks the policy which strategy fits the remaining budget; where the policy's choice depends
on the prompt's difficulty, the difficulty predictor first spends from the same ledger and hands its
samples to the chosen strategy.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from pydantic import ValidationError

from ttc_serve.models import request_context
from ttc_serve.models.check_format import CheckFormat
from ttc_serve.models.protocols import Generator, Verifier
from ttc_serve.models.revision_format import RevisionFormat
from ttc_serve.router.budget import CostModels, InsufficientBudget, Ledger, Meter
from ttc_serve.router.difficulty import Difficulty, DifficultyPredictor
from ttc_serve.router.errors import (
    BudgetTooSmall,
    DeadlineExceeded,
    InvalidParams,
    PromptTooLarge,
    PromptTooLong,
    UnknownStrategy,
)
from ttc_serve.router.policy import FixedPolicy, Policy
from ttc_serve.router.progress import Progress, ProgressListener
from ttc_serve.router.strategies import STRATEGIES
from ttc_serve.router.strategies.base import (
    Choice,
    SamplingConfig,
    StrategyContext,
    StrategyResult,
    parse_params,
)

AUTO = "auto"
STRATEGY_NAMES = (AUTO, *STRATEGIES)
# what a greedy request's search samples at where the deployment's own default is greedy too
EXPLORATION_TEMPERATURE = 0.8
# more characters than any token of a tokenizer in use holds (long whitespace runs reach a few
# dozen), so a prompt longer than this many per token of context cannot fit
MAX_CHARS_PER_TOKEN = 64


@dataclass(frozen=True)
class EngineRequest:
    prompt: str
    flops_budget: float
    strategy: str = AUTO
    strategy_params: Mapping[str, Any] | None = None
    sampling: SamplingConfig | None = None  # None: the engine's defaults
    question: str | None = None  # what the verifier sees as the question (None: the prompt)
    deadline_s: float | None = None
    progress: ProgressListener | None = None  # told at the end of every backend round


@dataclass
class EngineResult:
    strategy: str
    result: StrategyResult
    ledger: Ledger
    prompt_tokens: int
    difficulty: Difficulty | None
    sampling: SamplingConfig  # as it ran: max_tokens fitted to the context, greedy made search


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
        with request_context.tagged():
            ctx = await self.context(request)
            try:
                async with asyncio.timeout(request.deadline_s):
                    return await self._run(request, ctx, ctx.prompt_tokens)
            except TimeoutError as exc:
                raise DeadlineExceeded(request.deadline_s or 0.0) from exc

    async def context(self, request: EngineRequest) -> StrategyContext:
        """A fresh ledger and metered model access for one request (its prompt counted, max_tokens
        fitted to the models' context)."""
        # checked before the prompt is sent anywhere: a backend tokenizing megabytes grows by gigabytes
        chars_limit = self.generator.max_model_len * MAX_CHARS_PER_TOKEN
        if len(request.prompt) > chars_limit:
            raise PromptTooLarge(len(request.prompt), chars_limit, self.generator.max_model_len)
        prompt_tokens = await self.generator.count_tokens(request.prompt)
        sampling = self._fit_context(request, prompt_tokens)
        ledger = Ledger(budget=request.flops_budget)
        meter = Meter(ledger, self.generator, self.verifier, self.costs)
        return StrategyContext(prompt=request.prompt, prompt_tokens=prompt_tokens, meter=meter,
                               question=request.prompt if request.question is None else request.question,
                               sampling=sampling, revision=self.revision, check=self.check,
                               progress=Progress(ledger, request.progress))

    async def _run(self, request: EngineRequest, ctx: StrategyContext, prompt_tokens: int) -> EngineResult:
        difficulty = None
        # The estimate is worth its FLOPs only where the policy's choice turns on it; elsewhere the
        # whole budget goes to the one configuration every bin would get.
        if (request.strategy == AUTO and self.difficulty_predictor is not None
                and self.policy.depends_on_difficulty(ctx.meter.ledger.remaining)):
            await self._require_verifier_room(ctx)
            self._start(ctx, "difficulty")
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
        if strategy.scores(params) and difficulty is None:
            await self._require_verifier_room(ctx)
        minimum = strategy.min_flops(ctx, params)
        if minimum > ctx.meter.ledger.remaining and not ctx.reuse:
            raise BudgetTooSmall(request.flops_budget, minimum, name)
        self._start(ctx, name)
        try:
            result = await strategy.run(ctx, params)
        except InsufficientBudget as exc:  # not even one complete candidate could be paid for
            raise BudgetTooSmall(request.flops_budget, max(minimum, exc.needed), name) from exc
        if ctx.sampling.stop:
            result.choices = [cut_at_stop(c, ctx.sampling.stop) for c in result.choices]
        return EngineResult(strategy=name, result=result, ledger=ctx.meter.ledger,
                            prompt_tokens=prompt_tokens, difficulty=difficulty, sampling=ctx.sampling)

    @staticmethod
    def _start(ctx: StrategyContext, stage: str) -> None:
        if ctx.progress is not None:
            ctx.progress.start(stage)

    def _fit_context(self, request: EngineRequest, prompt_tokens: int) -> SamplingConfig:
        """The request's sampling as it will run: max_tokens capped so that prompt + completion fits
        the generator; a greedy request made deterministic search (``_explore``)."""
        room = self.generator.max_model_len - prompt_tokens
        if room < 1:
            raise PromptTooLong(prompt_tokens, self.generator.max_model_len)
        sampling = request.sampling or self.sampling
        if sampling.temperature == 0:
            sampling = self._explore(sampling, request.prompt)
        return replace(sampling, max_tokens=min(sampling.max_tokens, room))

    def _explore(self, sampling: SamplingConfig, prompt: str) -> SamplingConfig:
        """Temperature 0 asks for one deterministic answer. Search needs different samples to choose
        among (vLLM refuses n > 1 at temperature 0, and identical samples would be paid for and
        teach nothing), so the strategy samples at the deployment's temperature with a seed fixed
        by the prompt: the same request gets the same answer, the search still searches. A seed the
        request gives is kept."""
        temperature = self.sampling.temperature or EXPLORATION_TEMPERATURE
        seed = sampling.seed
        if seed is None:
            seed = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:4], "big") % 2**31
        return replace(sampling, temperature=temperature, seed=seed)

    async def _require_verifier_room(self, ctx: StrategyContext) -> None:
        """Refuse, before anything is spent, a prompt that leaves the verifier no room to score a
        step (its tokens counted by the verifier's own tokenizer where it has another)."""
        meter = ctx.meter
        [tokens] = await meter.scoring_tokens([ctx.question], [["x"]], [ctx.prompt_tokens + 3])
        if not meter.scorable(tokens):
            raise PromptTooLong(tokens, self.verifier.max_model_len, "the verifier (PRM)")


def cut_at_stop(choice: Choice, stops: tuple[str, ...]) -> Choice:
    """The choice's text up to (not including) the first of the request's stop strings, as OpenAI
    returns it; its logprobs cut with it (the tokens that begin before the cut)."""
    cut = min((i for i in (choice.text.find(s) for s in stops) if i >= 0), default=-1)
    if cut < 0:
        return choice
    logprobs = choice.logprobs
    if logprobs is not None:
        kept, offset = [], 0
        for token in logprobs:
            if offset >= cut:
                break
            kept.append(token)
            offset += len(token.token)
        logprobs = tuple(kept)
    return replace(choice, text=choice.text[:cut], finish_reason="stop", logprobs=logprobs)
