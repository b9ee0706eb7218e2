"""Measure the shipped embedded models on the held-out test split and write their model cards' tables.

- generator: pass@1 (mean over 16 samples at T=0.8), coverage@16, majority@16 per level;
- PRM: AUROC of the last-step score (correct vs incorrect final answer), best-of-16 weighted vs
  majority@16 per level;
- reviser: pass@1 of the 1st..4th attempt of sequential revision chains per level, revised as the
  service revises (check and repair for a generator with a check form, else the revise prompt);
- large generator: greedy and sampled pass@1 per level.

Usage: ``python -m bench.eval_models [--samples 16] [--chains 4]`` (make eval-models). Writes
``bench/results/models.json``. Other checkpoints (a rebuild, to check that the recipes reproduce the
shipped tables): ``TTC_GENERATOR_DIR=.. TTC_PRM_DIR=.. python -m bench.eval_models --large-dir ..
--out ..``.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import typer
from scipy.stats import mannwhitneyu
from tqdm import tqdm

from bench import revision_chains
from ttc_serve.app import wiring
from ttc_serve.app.settings import EMBEDDED_DIR, Settings
from ttc_serve.models.check_format import CheckFormat
from ttc_serve.models.embedded import task
from ttc_serve.models.protocols import GenerationRequest
from ttc_serve.models.revision_format import RevisionFormat
from ttc_serve.models.vllm_http import VllmGenerator, VllmVerifier
from ttc_serve.router.budget import CostModels
from ttc_serve.router.selection import Scored, majority, weighted_best_of_n

RESULTS = Path(__file__).resolve().parent / "results"
CHUNK = 48


async def sample(generator: VllmGenerator, prompts: list[str], n: int, temperature: float,
                 seed: int, desc: str, max_tokens: int = 192,
                 stop: list[str] | None = None) -> list[list[str]]:
    out: list[list[str]] = []
    for start in tqdm(range(0, len(prompts), CHUNK), desc=desc, mininterval=10):
        result = await generator.generate(GenerationRequest(
            prompts=prompts[start:start + CHUNK], n=n, max_tokens=max_tokens, temperature=temperature,
            stop=stop, seed=seed + start * n))
        out.extend([c.text for c in row] for row in result.completions)
    return out


async def score(verifier: VllmVerifier, prompts: list[str], solutions: list[str]) -> list[float]:
    """Last-step PRM score of each solution (0 for a solution with no steps)."""
    scores: list[float] = [0.0] * len(solutions)
    todo = [i for i, s in enumerate(solutions) if task.split_steps(s)]
    for start in tqdm(range(0, len(todo), 256), desc="prm", mininterval=10):
        batch = todo[start:start + 256]
        result = await verifier.score([prompts[i] for i in batch],
                                      [task.split_steps(solutions[i]) for i in batch])
        for i, row in zip(batch, result.step_scores, strict=True):
            scores[i] = row[-1]
    return scores


def auroc(positive: list[float], negative: list[float]) -> float:
    if not positive or not negative:
        return float("nan")
    u = mannwhitneyu(positive, negative, alternative="two-sided").statistic
    return float(u) / (len(positive) * len(negative))


async def evaluate_small(generator: VllmGenerator, verifier: VllmVerifier, problems: list[task.Problem],
                         samples: int, chains: int, layout: RevisionFormat, check: CheckFormat | None,
                         costs: CostModels) -> dict[str, Any]:
    prompts = [task.solve_prompt(p) for p in problems]
    drawn = await sample(generator, prompts, samples, 0.8, seed=11, desc="generator samples")
    flat_prompts = [p for p, row in zip(prompts, drawn, strict=True) for _ in row]
    flat = [s for row in drawn for s in row]
    flat_scores = await score(verifier, flat_prompts, flat)
    per_level: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    pos: list[float] = []
    neg: list[float] = []
    for qi, (problem, row) in enumerate(zip(problems, drawn, strict=True)):
        correct = [task.grade(problem, s).correct for s in row]
        answers = [task.extract_answer(s) for s in row]
        row_scores = flat_scores[qi * samples:(qi + 1) * samples]
        for ok, sc in zip(correct, row_scores, strict=True):
            (pos if ok else neg).append(sc)
        stats = per_level[problem.level]
        stats["pass@1"].append(sum(correct) / len(correct))
        stats["coverage"].append(float(any(correct)))
        key = [None if a is None else str(a) for a in answers]
        stats["majority"].append(float(majority(key) == str(problem.answer)))
        best = weighted_best_of_n([Scored(a, s) for a, s in zip(key, row_scores, strict=True)])
        stats["best_of_n_weighted"].append(float(best == str(problem.answer)))
        stats["prm_last_correct"].extend(sc for ok, sc in zip(correct, row_scores, strict=True) if ok)
        stats["prm_last_wrong"].extend(sc for ok, sc in zip(correct, row_scores, strict=True) if not ok)

    # as the service revises: check and repair where the generator has a check form
    if check is not None:
        revisions = revision_chains.pass_at_1_by_attempt(await revision_chains.run_chains(
            generator, verifier, costs, check, problems, chains))
    else:
        revisions = await evaluate_revisions(generator, problems, chains, layout)
    levels = {}
    for level, stats in sorted(per_level.items()):
        levels[str(level)] = {
            "questions": len(stats["pass@1"]),
            "pass@1": statistics.fmean(stats["pass@1"]),
            f"coverage@{samples}": statistics.fmean(stats["coverage"]),
            f"majority@{samples}": statistics.fmean(stats["majority"]),
            f"best_of_{samples}_weighted": statistics.fmean(stats["best_of_n_weighted"]),
            "prm_auroc": auroc(stats["prm_last_correct"], stats["prm_last_wrong"]),
            "revision_pass@1_by_attempt": revisions.get(level, []),
        }
    return {"samples_per_question": samples, "temperature": 0.8, "levels": levels,
            "prm_auroc_overall": auroc(pos, neg), "revision_chains_per_question": chains,
            "revision_mode": "revise" if check is None else "check_repair"}


async def evaluate_revisions(generator: VllmGenerator, problems: list[task.Problem], chains: int,
                             layout: RevisionFormat, length: int = 4) -> dict[int, list[float]]:
    """``chains`` sequential chains per question: attempt k sees the chain's previous attempts."""
    history: list[list[str]] = [[] for _ in range(len(problems) * chains)]
    owners = [p for p in problems for _ in range(chains)]
    for step in range(length):
        prompts = [task.revise_prompt(p, h, layout) if step else task.solve_prompt(p)
                   for p, h in zip(owners, history, strict=True)]
        outs = await sample(generator, prompts, 1, 0.8, seed=101 + step * 7919,
                            desc=f"revision {step + 1}")
        for h, row in zip(history, outs, strict=True):
            h.append(row[0])
    by_level: dict[int, list[list[float]]] = defaultdict(lambda: [[] for _ in range(length)])
    for p, h in zip(owners, history, strict=True):
        for k, attempt in enumerate(h):
            by_level[p.level][k].append(float(task.grade(p, attempt).correct))
    return {level: [statistics.fmean(col) for col in cols] for level, cols in by_level.items()}


async def evaluate_large(generator: VllmGenerator, problems: list[task.Problem]) -> dict[str, Any]:
    prompts = [task.solve_prompt(p) for p in problems]
    greedy = await sample(generator, prompts, 1, 0.0, seed=5, desc="large greedy")
    sampled = await sample(generator, prompts, 4, 0.8, seed=7, desc="large samples")
    levels: dict[str, dict[str, float]] = {}
    for level in sorted({p.level for p in problems}):
        idx = [i for i, p in enumerate(problems) if p.level == level]
        levels[str(level)] = {
            "greedy": statistics.fmean(float(task.grade(problems[i], greedy[i][0]).correct) for i in idx),
            "pass@1": statistics.fmean(float(task.grade(problems[i], s).correct)
                                       for i in idx for s in sampled[i]),
        }
    return {"levels": levels}


async def run(samples: int, chains: int, small: bool, include_large: bool,
              large_dir: Path) -> dict[str, Any]:
    problems = task.held_out_split("test")
    report: dict[str, Any] = {"split": "test", "questions": len(problems)}
    started = time.time()
    # the embedded models as the settings configure them, on servers of their own
    settings = wiring.offline(Settings(generator_url=None, prm_url=None))
    if small:
        async with wiring.backend_pairs(settings) as (pair,):
            report["small"] = await evaluate_small(pair.generator, pair.verifier, problems,
                                                   samples, chains, settings.revision_format(),
                                                   settings.check_format(), wiring.cost_models(settings))
    if include_large and (large_dir / "config.json").exists():
        async with wiring.checkpoint_generator(settings, large_dir, "large", settings.max_model_len) as large:
            report["large"] = await evaluate_large(large, problems)
    report["seconds"] = time.time() - started
    return report


def main(samples: int = 16, chains: int = 4, small: bool = True, large: bool = True,
         large_dir: Path = EMBEDDED_DIR / "generator-large",
         out: Path = RESULTS / "models.json") -> None:
    """Measure and merge into ``out`` (so the large model can be measured on its own). The small
    generator and the PRM come from the service settings (``TTC_GENERATOR_DIR``, ``TTC_PRM_DIR``)."""
    report = asyncio.run(run(samples, chains, small, large, large_dir))
    out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(out.read_text()) if out.exists() else {}
    report = {**previous, **report}
    out.write_text(json.dumps(report, indent=2) + "\n")
    typer.echo(json.dumps(report, indent=2))


if __name__ == "__main__":
    typer.run(main)
