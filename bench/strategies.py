"""Accuracy versus FLOPs, per strategy and difficulty level, on the dev split (issue: search and
revision strategies). Runs the engine in-process against the embedded vLLM CPU servers, so it
measures what the service would answer at each budget, with the budget accounting of the service.

``python -m bench.strategies [--per-level 12] [--budgets 2e9,4e9,8e9,1.6e10,3.2e10]``
Writes ``bench/results/strategies.json`` and ``bench/results/strategies.png``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import typer
from tqdm import tqdm

from bench.backends import embedded_backends
from models.cost import FlopsModel
from models.embedded import task
from router.budget import CostModels
from router.engine import Engine, EngineRequest
from router.errors import BudgetTooSmall
from router.strategies.base import SamplingConfig

RESULTS = Path(__file__).resolve().parent / "results"
CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "best_of_n": ("best_of_n", {}),
    "majority": ("majority", {}),
    "beam_search M=4": ("beam_search", {"beam_width": 4}),
    "lookahead k=1": ("lookahead", {"beam_width": 4, "lookahead": 1}),
    "dvts M=4": ("dvts", {"beam_width": 4}),
    "revisions 1:4": ("revisions", {"ratio": 0.25}),
    "revisions 1:1": ("revisions", {"ratio": 1.0}),
    "revisions 4:1": ("revisions", {"ratio": 4.0}),
    "revisions 16:1": ("revisions", {"ratio": 16.0}),
}


async def evaluate(engine: Engine, problems: list[task.Problem], budgets: list[float],
                   concurrency: int) -> list[dict[str, Any]]:
    gate = asyncio.Semaphore(concurrency)
    rows: list[dict[str, Any]] = []
    jobs = [(label, budget, i, problem) for label in CONFIGS for budget in budgets
            for i, problem in enumerate(problems)]
    bar = tqdm(total=len(jobs), desc="strategy runs", mininterval=10)

    async def one(label: str, budget: float, i: int, problem: task.Problem) -> None:
        name, params = CONFIGS[label]
        async with gate:
            try:
                out = await engine.complete(EngineRequest(
                    prompt=task.solve_prompt(problem), flops_budget=budget, strategy=name,
                    strategy_params=params, sampling=SamplingConfig(seed=1000 + i)))
                correct = task.grade(problem, out.result.text).correct
                rows.append({"config": label, "budget": budget, "level": problem.level,
                             "correct": correct, "flops_used": out.ledger.used,
                             "samples": out.result.samples, "finish": out.result.outcome})
            except BudgetTooSmall:
                rows.append({"config": label, "budget": budget, "level": problem.level,
                             "correct": False, "flops_used": 0.0, "samples": 0, "finish": "too_small"})
        bar.update()

    await asyncio.gather(*(one(*job) for job in jobs))
    bar.close()
    return rows


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    table: dict[str, dict[str, dict[str, dict[str, float]]]] = defaultdict(lambda: defaultdict(dict))
    groups: dict[tuple[str, int, float], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["config"], row["level"], row["budget"])].append(row)
    for (config, level, budget), items in sorted(groups.items()):
        n = len(items)
        acc = sum(r["correct"] for r in items) / n
        table[str(level)][config][f"{budget:.3g}"] = {
            "accuracy": acc, "stderr": (acc * (1 - acc) / n) ** 0.5, "n": n,
            "mean_flops_used": sum(r["flops_used"] for r in items) / n,
            "too_small": sum(r["finish"] == "too_small" for r in items)}
    return table


def plot(table: dict[str, Any], budgets: list[float], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = sorted(table)
    fig, axes = plt.subplots(1, len(levels), figsize=(4 * len(levels), 4), sharey=True)
    for ax, level in zip(axes, levels, strict=True):
        for config, by_budget in table[level].items():
            xs = [b for b in budgets if f"{b:.3g}" in by_budget]
            ys = [by_budget[f"{b:.3g}"]["accuracy"] for b in xs]
            style = "--" if config.startswith("revisions") else "-"
            ax.plot(xs, ys, style, marker="o", label=config)
        ax.set_xscale("log")
        ax.set_title(f"level {level}")
        ax.set_xlabel("FLOPs budget")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (dev split)")
    axes[-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=120)


async def main_async(per_level: int, budgets: list[float], concurrency: int) -> dict[str, Any]:
    dev = task.held_out_split("dev")
    problems = [p for level in task.LEVELS for p in [q for q in dev if q.level == level][:per_level]]
    started = time.time()
    async with embedded_backends() as backends:
        settings = backends.settings
        costs = CostModels(FlopsModel.from_model_dir(settings.generator_dir),
                           FlopsModel.from_model_dir(settings.prm_dir))
        engine = Engine(backends.generator, backends.verifier, costs)
        rows = await evaluate(engine, problems, budgets, concurrency)
    return {"split": "dev", "questions_per_level": per_level, "budgets": budgets,
            "configs": {k: {"strategy": v[0], "params": v[1]} for k, v in CONFIGS.items()},
            "seconds": time.time() - started, "accuracy": summarise(rows)}


def main(per_level: int = 12, budgets: str = "2e9,4e9,8e9,1.6e10,3.2e10", concurrency: int = 16) -> None:
    grid = [float(b) for b in budgets.split(",")]
    result = asyncio.run(main_async(per_level, grid, concurrency))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "strategies.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result["accuracy"], grid, RESULTS / "strategies.png")
    typer.echo(f"wrote {RESULTS / 'strategies.json'} and strategies.png in {result['seconds']:.0f}s")


if __name__ == "__main__":
    typer.run(main)
