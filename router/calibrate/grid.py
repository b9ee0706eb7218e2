"""Running questions through engines: the strategy grid, the difficulty predictor, oracle pass rates.

Every run goes through ``Engine`` exactly as a request to the service would: the same budget
accounting, the same strategies and the engine's sampling defaults, which ``app.wiring`` builds from
the deployment's settings. Runs go against one or more generator/PRM server pairs; jobs are spread
over the pairs and run concurrently, and each finished run is appended to the record store (so a
re-run resumes).
Questions get fixed seeds, the same for every configuration, so configurations are compared on the
same random draws.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from ttc_serve.models.protocols import GenerationRequest
from ttc_serve.router.calibrate.dataset import Question
from ttc_serve.router.calibrate.records import RecordStore
from ttc_serve.router.difficulty import VerifierDifficulty
from ttc_serve.router.engine import Engine, EngineRequest
from ttc_serve.router.errors import BudgetTooSmall
from ttc_serve.router.strategies.base import SamplingConfig

SEED_BASE = 10_000


@dataclass(frozen=True)
class GridConfig:
    label: str
    strategy: str
    params: dict[str, Any] = field(default_factory=dict)


# The paper's grid (§5, §6) plus DVTS: searches against the PRM, and revisions over a range of
# sequential : parallel ratios.
DEFAULT_GRID = (
    GridConfig("best_of_n", "best_of_n"),
    GridConfig("majority", "majority"),
    GridConfig("beam M=4", "beam_search", {"beam_width": 4}),
    GridConfig("beam M=sqrtN", "beam_search", {"beam_width": "sqrt"}),
    GridConfig("lookahead k=1", "lookahead", {"beam_width": 4, "lookahead": 1}),
    GridConfig("dvts M=4", "dvts", {"beam_width": 4}),
    GridConfig("revisions 1:4", "revisions", {"ratio": 0.25}),
    GridConfig("revisions 1:1", "revisions", {"ratio": 1.0}),
    GridConfig("revisions 4:1", "revisions", {"ratio": 4.0}),
    # check-and-repair chains need no PRM to pick among their last attempts: sequential at the
    # budgets where scoring is beyond reach
    GridConfig("revisions 4:1 majority", "revisions", {"ratio": 4.0, "selection": "majority"}),
)


def sampling_for(index: int, base: SamplingConfig) -> SamplingConfig:
    from dataclasses import replace

    return replace(base, seed=SEED_BASE + index)


async def run_jobs(jobs: Sequence[Callable[[Engine], Awaitable[None]]], engines: Sequence[Engine],
                   concurrency: int, desc: str) -> None:
    """Each job gets an engine (round robin); at most ``concurrency`` run per engine at a time."""
    gates = [asyncio.Semaphore(concurrency) for _ in engines]
    bar = tqdm(total=len(jobs), desc=desc, mininterval=10)

    async def one(i: int, job: Callable[[Engine], Awaitable[None]]) -> None:
        k = i % len(engines)
        async with gates[k]:
            await job(engines[k])
        bar.update()

    try:
        await asyncio.gather(*(one(i, job) for i, job in enumerate(jobs)))
    finally:
        bar.close()


async def run_grid(engines: Sequence[Engine], questions: Sequence[Question],
                   configs: Sequence[GridConfig], budgets: Sequence[float], store: RecordStore,
                   phase: str = "grid", concurrency: int = 16) -> None:
    """Every configuration at every budget on every question (skipping what the store has)."""
    jobs = []
    for config in configs:
        for budget in budgets:
            for index, question in enumerate(questions):
                if (phase, config.label, float(budget), question.qid) in store:
                    continue
                jobs.append(_grid_job(store, phase, config, budget, index, question))
    await run_jobs(jobs, engines, concurrency, f"{phase} runs")


def _grid_job(store: RecordStore, phase: str, config: GridConfig, budget: float, index: int,
              question: Question) -> Callable[[Engine], Awaitable[None]]:
    async def job(engine: Engine) -> None:
        row: dict[str, Any] = {"phase": phase, "config": config.label, "budget": float(budget),
                               "qid": question.qid, "level": question.level}
        try:
            out = await engine.complete(EngineRequest(
                prompt=question.prompt, flops_budget=budget, strategy=config.strategy,
                strategy_params=config.params, sampling=sampling_for(index, engine.sampling)))
        except BudgetTooSmall:
            row.update(correct=False, flops_used=0.0, flops={}, samples=0, finish="too_small",
                       strategy=config.strategy, params={})
        else:
            row.update(correct=question.is_correct(out.result.text), flops_used=out.ledger.used,
                       generated_tokens=out.ledger.generated_tokens,
                       flops=dict(out.ledger.spent), samples=out.result.samples,
                       finish=out.result.compute_finish_reason, strategy=out.strategy,
                       params=out.result.params)
            if out.difficulty is not None:
                row.update(bin=out.difficulty.bin, score=out.difficulty.score)
        await asyncio.to_thread(store.add, row)

    return job


async def predict_difficulty(engines: Sequence[Engine], questions: Sequence[Question], samples: int,
                             store: RecordStore, concurrency: int = 16) -> None:
    """The verifier-based score of every question, exactly as ``auto`` computes it at serve time."""
    predictor = VerifierDifficulty(samples=samples, thresholds=(0.5,))
    label = f"k={samples}"

    def make(index: int, question: Question) -> Callable[[Engine], Awaitable[None]]:
        async def job(engine: Engine) -> None:
            ctx = await engine.context(EngineRequest(prompt=question.prompt, flops_budget=1e18,
                                                     sampling=sampling_for(index, engine.sampling)))
            difficulty = await predictor.predict(ctx)
            await asyncio.to_thread(store.add, {
                "phase": "difficulty", "config": label, "budget": 0.0, "qid": question.qid,
                "level": question.level, "score": difficulty.score,
                "flops_used": ctx.meter.ledger.used, "samples": difficulty.samples})
        return job

    jobs = [make(i, q) for i, q in enumerate(questions)
            if ("difficulty", label, 0.0, q.qid) not in store]
    await run_jobs(jobs, engines, concurrency, "difficulty")


async def oracle_pass_rates(engines: Sequence[Engine], questions: Sequence[Question], samples: int,
                            store: RecordStore, concurrency: int = 16) -> None:
    """The generator's pass@1 on every question from ``samples`` samples: the oracle difficulty."""
    label = f"n={samples}"

    def make(index: int, question: Question) -> Callable[[Engine], Awaitable[None]]:
        async def job(engine: Engine) -> None:
            base = engine.sampling
            result = await engine.generator.generate(GenerationRequest(
                prompts=[question.prompt], n=samples, max_tokens=base.max_tokens,
                temperature=base.temperature, seed=SEED_BASE + 7 * index + 3))
            correct = sum(question.is_correct(c.text) for c in result.completions[0])
            await asyncio.to_thread(store.add, {
                "phase": "oracle", "config": label, "budget": 0.0, "qid": question.qid,
                "level": question.level, "pass_rate": correct / samples})
        return job

    jobs = [make(i, q) for i, q in enumerate(questions) if ("oracle", label, 0.0, q.qid) not in store]
    await run_jobs(jobs, engines, concurrency, "oracle pass rates")
