"""Property: whatever the budget, strategy, parameters and however long the samples turn out, no
request spends more than its budget. Thousands of runs cannot go through vLLM, so the backends
here are scripted (random-length completions, random scores); the same engine, meter and
strategies run as in the service, and the end-to-end tests check the real path."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from ttc_serve.models.cost import FlopsModel
from ttc_serve.models.protocols import Completion, GenerationRequest, GenerationResult, Usage, VerifierResult
from ttc_serve.router.budget import CostModels
from ttc_serve.router.engine import Engine, EngineRequest
from ttc_serve.router.errors import BudgetTooSmall
from ttc_serve.router.strategies import STRATEGIES
from ttc_serve.router.strategies.base import SamplingConfig


class ScriptedGenerator:
    name = "scripted"
    max_model_len = 4096

    def __init__(self, rng: random.Random):
        self.rng = rng

    async def count_tokens(self, prompt: str) -> int:
        return len(prompt) + 1

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        rows = []
        for _ in request.prompts:
            row = []
            for _ in range(request.n):
                length = self.rng.randint(1, request.max_tokens)
                answer = self.rng.random() < 0.3
                text = ("x" * (length - 1)) + ("\n" if request.stop and not answer else "")
                if answer:
                    text = f"answer: {self.rng.randint(0, 3)}"[:length] or "a"
                row.append(Completion(text=text, finish_reason="stop", tokens=length))
            rows.append(row)
        prompt_tokens = [len(p) + 1 for p in request.prompts]
        cached = [self.rng.randint(0, p) for p in prompt_tokens]
        generated = sum(c.tokens for row in rows for c in row)
        return GenerationResult(completions=rows, usage=Usage(sum(prompt_tokens), generated, sum(cached)),
                                prompt_tokens=prompt_tokens, cached_tokens=cached)


class ScriptedVerifier:
    """A verifier with a tokenizer of its own: ``tokens_per_char`` of its tokens per character of
    the text (the generator's scripted tokens are one a character)."""

    name = "scripted-prm"
    max_model_len = 8192
    shares_generator_tokenizer = False

    def __init__(self, rng: random.Random, tokens_per_char: int = 1):
        self.rng = rng
        self.tokens_per_char = tokens_per_char

    async def count_inputs(self, prompts: Sequence[str], solutions: Sequence[Sequence[str]]) -> list[int]:
        return [(len(p) + 1 + sum(len(s) + 2 for s in steps)) * self.tokens_per_char
                for p, steps in zip(prompts, solutions, strict=True)]

    async def score(self, prompts: Sequence[str], solutions: Sequence[Sequence[str]]) -> VerifierResult:
        tokens = await self.count_inputs(prompts, solutions)
        return VerifierResult(step_scores=[[self.rng.random() for _ in steps] for steps in solutions],
                              usage=Usage(prompt_tokens=sum(tokens)), input_tokens=tokens)


COSTS = CostModels(generator=FlopsModel(870_000, 4, 128), verifier=FlopsModel(860_000, 4, 128))


@settings(max_examples=1000)
@given(
    budget=st.floats(1e7, 1e11),
    strategy=st.sampled_from(sorted(STRATEGIES)),
    n=st.one_of(st.none(), st.integers(1, 64)),
    width=st.sampled_from([1, 2, 4, 8, "sqrt"]),
    max_tokens=st.integers(4, 160),
    ratio=st.sampled_from([0.0625, 1.0, 4.0, 64.0]),
    seed=st.integers(0, 2**16),
    prm_tokens_per_char=st.sampled_from([1, 4]),
)
def test_no_strategy_ever_spends_more_than_its_budget(budget: float, strategy: str, n: int | None,
                                                      width: int | str, max_tokens: int, ratio: float,
                                                      seed: int, prm_tokens_per_char: int) -> None:
    """Also when the PRM's tokenizer splits the text into four times the generator's tokens: its
    inputs are then counted in its own tokens before they are scored."""
    rng = random.Random(seed)
    engine = Engine(ScriptedGenerator(rng), ScriptedVerifier(rng, prm_tokens_per_char), COSTS)
    params: dict[str, object] = {}
    if strategy in ("beam_search", "dvts", "lookahead"):
        params = {"beam_width": width, "step_tokens": max(1, max_tokens // 3)}
        if n is not None:
            params["n"] = max(n, width) if isinstance(width, int) else n
    elif strategy == "revisions":
        params = {"ratio": ratio} | ({"n": n} if n else {})
    elif n is not None:
        params = {"n": n}
    request = EngineRequest(prompt="question: 12+7-3\n", flops_budget=budget, strategy=strategy,
                            strategy_params=params, sampling=SamplingConfig(max_tokens=max_tokens))
    try:
        outcome = asyncio.run(engine.complete(request))
    except BudgetTooSmall as refused:
        assert refused.minimum > budget
        return
    assert outcome.ledger.used <= budget
    assert outcome.result.samples >= 1
    assert outcome.ledger.used == sum(outcome.ledger.spent.values())


POLICY_STRATEGIES = [("best_of_n", {}), ("majority", {}), ("beam_search", {"beam_width": 4}),
                     ("beam_search", {"beam_width": "sqrt"}), ("lookahead", {"beam_width": 2}),
                     ("dvts", {"beam_width": 4}), ("revisions", {"ratio": 4.0})]


@settings(max_examples=300)
@given(
    budget=st.floats(1e7, 1e11),
    choices=st.lists(st.sampled_from(range(len(POLICY_STRATEGIES))), min_size=10, max_size=10),
    samples=st.integers(1, 8),
    max_tokens=st.integers(4, 160),
    seed=st.integers(0, 2**16),
)
def test_auto_with_the_difficulty_estimate_charged_never_spends_more_than_its_budget(
        budget: float, choices: list[int], samples: int, max_tokens: int, seed: int) -> None:
    """auto = predict (charged to the request, where the policy's choice turns on the bin) + whatever
    the policy picks for the bin and what is left, reusing the prediction's samples."""
    from ttc_serve.router.difficulty import VerifierDifficulty
    from ttc_serve.router.policy import CalibratedPolicy

    grid = [1e8, 1e9]
    policy = CalibratedPolicy.model_validate({
        "models": {"generator": "g", "verifier": "v"},
        "difficulty": {"samples": samples, "thresholds": [0.2, 0.4, 0.6, 0.8]},
        "table": {b: [{"budget": g, "strategy": POLICY_STRATEGIES[choices[2 * (b - 1) + i]][0],
                       "params": POLICY_STRATEGIES[choices[2 * (b - 1) + i]][1]}
                      for i, g in enumerate(grid)] for b in range(1, 6)}})
    rng = random.Random(seed)
    engine = Engine(ScriptedGenerator(rng), ScriptedVerifier(rng), COSTS, policy=policy,
                    difficulty_predictor=VerifierDifficulty(samples, tuple(policy.difficulty.thresholds)))
    request = EngineRequest(prompt="question: 12+7-3\n", flops_budget=budget,
                            sampling=SamplingConfig(max_tokens=max_tokens))
    try:
        outcome = asyncio.run(engine.complete(request))
    except BudgetTooSmall as refused:
        assert refused.minimum > budget or refused.minimum > 0
        return
    assert outcome.ledger.used <= budget
    if policy.depends_on_difficulty(budget):
        assert outcome.difficulty is not None and 1 <= outcome.difficulty.bin <= 5
        assert outcome.ledger.spent["difficulty"] > 0 or outcome.difficulty.samples == 0
    else:  # every bin gets the same choice here: nothing is spent on predicting one
        assert outcome.difficulty is None and outcome.ledger.spent.get("difficulty", 0.0) == 0.0
