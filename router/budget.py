"""The FLOPs ledger, and the metered model access that every strategy call goes through.

A call is started only if its worst case fits what remains (generated length is unknown in advance,
so the worst case assumes every sample runs to ``max_tokens`` and no prefix-cache hit); the ledger is
then charged with the cost model applied to the usage the backend reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ttc_serve.models.cost import FlopsModel
from ttc_serve.models.protocols import (
    GenerationRequest,
    GenerationResult,
    Generator,
    Verifier,
    VerifierResult,
)

ACCOUNTS = ("generator", "verifier", "difficulty")


class InsufficientBudget(Exception):
    """A call was not started because its worst case exceeds what remains."""

    def __init__(self, needed: float, remaining: float):
        super().__init__(f"needs up to {needed:.4g} FLOPs, {remaining:.4g} remain")
        self.needed = needed
        self.remaining = remaining


@dataclass
class Ledger:
    budget: float
    spent: dict[str, float] = field(default_factory=lambda: dict.fromkeys(ACCOUNTS, 0.0))
    generated_tokens: int = 0
    scored_tokens: int = 0
    generate_calls: int = 0
    score_calls: int = 0
    completions: int = 0  # samples drawn (every completion of every generate call)
    calls: list[dict[str, object]] = field(default_factory=list)  # per backend call, for the trace

    @property
    def used(self) -> float:
        return sum(self.spent.values())

    @property
    def remaining(self) -> float:
        return self.budget - self.used

    def charge(self, account: str, flops: float) -> None:
        self.spent[account] = self.spent.get(account, 0.0) + flops

    def require(self, worst_case: float) -> None:
        if worst_case > self.remaining:
            raise InsufficientBudget(worst_case, self.remaining)


@dataclass(frozen=True)
class CostModels:
    generator: FlopsModel
    verifier: FlopsModel

    def sample_worst(self, prompt_tokens: int, max_tokens: int) -> float:
        """Decoding one more sample of ``max_tokens`` on a computed prompt."""
        return self.generator.span(prompt_tokens, prompt_tokens + max_tokens)

    def score_worst(self, input_tokens: int) -> float:
        return self.verifier.sequence(input_tokens)


def prm_tokens_bound(prompt_tokens: int, completion_tokens: int, n_steps: int) -> int:
    """Upper bound of a PRM input's tokens: prompt + completion + one tag per step (+ BOS slack)."""
    return prompt_tokens + completion_tokens + n_steps + 2


class Meter:
    """Generator and verifier access for one request: checks before, charges after."""

    def __init__(self, ledger: Ledger, generator: Generator, verifier: Verifier, costs: CostModels,
                 account: str | None = None):
        self.ledger = ledger
        self.generator = generator
        self.verifier = verifier
        self.costs = costs
        self.account = account  # None: charge "generator"/"verifier"; else everything to this one

    def with_account(self, account: str) -> Meter:
        return Meter(self.ledger, self.generator, self.verifier, self.costs, account)

    def generate_worst(self, prompt_tokens: Sequence[int], n: int, max_tokens: int) -> float:
        return sum(self.costs.generator.generation(p, 0, [max_tokens] * n) for p in prompt_tokens)

    async def generate(self, request: GenerationRequest, prompt_tokens: Sequence[int]) -> GenerationResult:
        """``prompt_tokens``: an upper bound of each prompt's token count."""
        self.ledger.require(self.generate_worst(prompt_tokens, request.n, request.max_tokens))
        result = await self.generator.generate(request)
        flops = sum(
            self.costs.generator.generation(p, c, [s.tokens for s in samples])
            for p, c, samples in zip(result.prompt_tokens, result.cached_tokens, result.completions,
                                     strict=True))
        self.ledger.charge(self.account or "generator", flops)
        self.ledger.calls.append({
            "backend": "generator", "account": self.account or "generator", "flops": flops,
            "sampling": _sampling(request),
            "prompt_tokens": result.prompt_tokens, "cached_tokens": result.cached_tokens,
            "completion_tokens": [[s.tokens for s in row] for row in result.completions]})
        self.ledger.generated_tokens += result.usage.completion_tokens
        self.ledger.generate_calls += 1
        self.ledger.completions += sum(len(row) for row in result.completions)
        return result

    async def scoring_tokens(self, prompts: Sequence[str], solutions: Sequence[Sequence[str]],
                             generator_bounds: Sequence[int]) -> list[int]:
        """The tokens the budget must assume for each PRM input: the bound in generator tokens when
        the verifier shares the generator's tokenizer, else the verifier's own count (it may split
        the same text into many more tokens than the generator did)."""
        if self.verifier.shares_generator_tokenizer:
            return list(generator_bounds)
        return await self.verifier.count_inputs(prompts, solutions)

    def scorable(self, input_tokens: int) -> bool:
        """Whether a PRM input of this many tokens fits the verifier's context."""
        return input_tokens <= self.verifier.max_model_len

    async def score(self, prompts: Sequence[str], solutions: Sequence[Sequence[str]],
                    tokens_bound: Sequence[int]) -> VerifierResult:
        """``tokens_bound``: from ``scoring_tokens``, so that the check before holds in the PRM's
        own tokens."""
        self.ledger.require(sum(self.costs.score_worst(t) for t in tokens_bound))
        result = await self.verifier.score(prompts, solutions)
        flops = sum(self.costs.verifier.sequence(t) for t in result.input_tokens)
        self.ledger.charge(self.account or "verifier", flops)
        self.ledger.calls.append({"backend": "verifier", "account": self.account or "verifier",
                                  "flops": flops, "input_tokens": result.input_tokens})
        self.ledger.scored_tokens += sum(result.input_tokens)
        self.ledger.score_calls += 1
        return result


def _sampling(request: GenerationRequest) -> dict[str, object]:
    """How a generate call sampled, for the trace (options left at their defaults are left out)."""
    shown: dict[str, object] = {"n": request.n, "max_tokens": request.max_tokens,
                                "temperature": request.temperature, "top_p": request.top_p}
    if request.stop:
        shown["stop"] = list(request.stop)
    if request.seed is not None:
        shown["seed"] = request.seed
    return shown | request.options()
