"""Check-and-repair revision chains of held-out questions, run by the service's own code
(``router/strategies/check_repair.py``) on a vLLM server: what ``bench.eval_models`` reports as the
reviser's pass@1 by attempt for a generator with a check form.

Each question gets ``chains`` first attempts (T = 0.8) and then ``length - 1`` check-and-repair
revisions of each chain; a chain whose last attempt passed every check keeps it (its later attempts
are that one, as a user would get it). Nothing here knows the true answers: the grader only scores.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field

from tqdm import tqdm

from ttc_serve.models.check_format import CheckFormat
from ttc_serve.models.embedded import task
from ttc_serve.models.protocols import GenerationRequest, Generator, Verifier
from ttc_serve.router.budget import CostModels, Ledger, Meter
from ttc_serve.router.selection import extract_answer, split_steps
from ttc_serve.router.strategies.base import Candidate, SamplingConfig, StrategyContext
from ttc_serve.router.strategies.check_repair import CheckAndRepair

MAX_TOKENS = 192  # as bench.eval_models samples
CONCURRENT_QUESTIONS = 24


@dataclass
class QuestionChains:
    problem: task.Problem
    attempts: list[list[str]]  # [chain][attempt k] (a kept attempt repeats)
    checks: dict[str, int | None] = field(default_factory=dict)  # expression -> what its check said
    flops: float = 0.0


async def question_chains(generator: Generator, verifier: Verifier, costs: CostModels, form: CheckFormat,
                          problem: task.Problem, chains: int, length: int, seed: int) -> QuestionChains:
    prompt = task.solve_prompt(problem)
    meter = Meter(Ledger(budget=math.inf), generator, verifier, costs)
    ctx = StrategyContext(prompt=prompt, prompt_tokens=await generator.count_tokens(prompt), meter=meter,
                          question=prompt,
                          sampling=SamplingConfig(temperature=0.8, max_tokens=MAX_TOKENS, seed=seed),
                          check=form)
    first = await meter.generate(GenerationRequest(prompts=[prompt], n=chains, max_tokens=MAX_TOKENS,
                                                   temperature=0.8, seed=seed), [ctx.prompt_tokens])
    live = [[Candidate(text=c.text, finish_reason=c.finish_reason, tokens=c.tokens,
                       answer=extract_answer(c.text), steps=split_steps(c.text))]
            for c in first.completions[0]]
    repairer = CheckAndRepair(ctx, form)
    active = list(live)
    for revision in range(1, length):
        lengths = [len(c) for c in active]
        if active:
            await repairer.revise(active, 0.0, seed + revision * 7_919)
        active = [c for c, before in zip(active, lengths, strict=True) if len(c) > before]
    attempts = [[a.text for a in chain] + [chain[-1].text] * (length - len(chain)) for chain in live]
    return QuestionChains(problem, attempts, repairer.said, meter.ledger.used)


async def run_chains(generator: Generator, verifier: Verifier, costs: CostModels, form: CheckFormat,
                     problems: list[task.Problem], chains: int, length: int = 4,
                     seed: int = 101) -> list[QuestionChains]:
    gate = asyncio.Semaphore(CONCURRENT_QUESTIONS)
    bar = tqdm(total=len(problems), desc="check-and-repair chains", mininterval=10)

    async def one(i: int, problem: task.Problem) -> QuestionChains:
        async with gate:
            out = await question_chains(generator, verifier, costs, form, problem, chains, length,
                                        seed + i * chains)
            bar.update()
            return out

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(one(i, p)) for i, p in enumerate(problems)]
    bar.close()
    return [t.result() for t in tasks]


def pass_at_1_by_attempt(results: list[QuestionChains]) -> dict[int, list[float]]:
    """Per level, the fraction of chains whose k-th attempt is correct, k = 1..length."""
    by_level: dict[int, list[list[float]]] = {}
    for r in results:
        for chain in r.attempts:
            columns = by_level.setdefault(r.problem.level, [[] for _ in chain])
            for k, attempt in enumerate(chain):
                columns[k].append(float(task.grade(r.problem, attempt).correct))
    return {level: [sum(col) / len(col) for col in cols] for level, cols in by_level.items()}
