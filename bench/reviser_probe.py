"""Does a generator's revise form read its attempts, and do its revisions help? On the dev split (the
test split with ``--split test``, for a final measurement only), for one checkpoint (a candidate
recipe's, before it is shipped):

- copy probe (torch, no server): negative log-likelihood, nats per solution, of the correct solution
  fresh (solve form), with it as the only attempt, with a slipped copy of it as the attempt, and with
  two copies and one slip; a reviser that reads its context scores the second near 0;
- revision chains through a vLLM CPU server: pass@1 of attempts 1..4 (``chains`` per question);
- one revision of each of 4 first attempts: how often a right attempt stays right, a wrong one is
  fixed, and the attempt is copied verbatim.

Usage: ``python -m bench.reviser_probe DIR [--per-level 40] [--chains 4] [--split dev] [--out FILE]``.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
import typer
from transformers import LlamaForCausalLM

from bench.eval_models import evaluate_revisions, sample
from models.embedded import examples, task, training
from models.launcher import ServerSpec, VllmServer, start_all
from models.revision_format import RevisionFormat
from models.vllm_http import HttpBackendConfig, VllmGenerator

LEVELS = (2, 3, 4)


def _nll(model: LlamaForCausalLM, examples: list[examples.Example]) -> float:
    input_ids, attention, labels = training.encode(examples)
    with torch.no_grad():
        logits = model(input_ids=input_ids, attention_mask=attention).logits[:, :-1]
    labels = labels[:, 1:]
    logp = torch.log_softmax(logits.float(), -1)
    picked = torch.gather(logp, 2, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return float((-(picked * (labels != -100)).sum(1)).mean())


def copy_probe(model_dir: Path, problems: list[task.Problem],
               layout: RevisionFormat) -> dict[str, dict[str, float]]:
    model = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()  # type: ignore[no-untyped-call]
    rng = random.Random(3)
    out: dict[str, dict[str, float]] = {}
    for level in LEVELS:
        group = [p for p in problems if p.level == level][:24]
        contexts = {
            "fresh": [task.solve_prompt(p) for p in group],
            "correct_attempt": [task.revise_prompt(p, [p.solution()], layout) for p in group],
            "slipped_attempt": [task.revise_prompt(p, [examples.slipped_solution(p, rng)], layout)
                                for p in group],
            "two_correct_one_slipped": [task.revise_prompt(
                p, [p.solution(), examples.slipped_solution(p, rng), p.solution()], layout)
                for p in group],
        }
        out[str(level)] = {name: _nll(model, [examples.Example(c, p.solution())
                                              for c, p in zip(prompts, group, strict=True)])
                           for name, prompts in contexts.items()}
    return out


async def chains_and_one_revision(model_dir: Path, problems: list[task.Problem], chains: int,
                                  layout: RevisionFormat) -> dict[str, Any]:
    server = VllmServer(ServerSpec(model_dir, "probe", max_model_len=training.MAX_LEN, cpu_bind="0-1"))
    try:
        await start_all([server], 300)
        generator = VllmGenerator(HttpBackendConfig(server.base_url, "probe", training.MAX_LEN,
                                                    timeout_s=900))
        try:
            by_attempt = await evaluate_revisions(generator, problems, chains, layout)
            firsts = await sample(generator, [task.solve_prompt(p) for p in problems], 4, 0.8, 77,
                                  "first attempts")
            pairs = [(p, a) for p, row in zip(problems, firsts, strict=True) for a in row]
            revised = await sample(generator, [task.revise_prompt(p, [a], layout) for p, a in pairs],
                                   1, 0.8, 99, "one revision")
        finally:
            await generator.aclose()
    finally:
        server.stop()
    stats: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for (problem, attempt), row in zip(pairs, revised, strict=True):
        before, after = task.grade(problem, attempt).correct, task.grade(problem, row[0]).correct
        level = stats[problem.level]
        level["first"].append(before)
        level["revision"].append(after)
        level["right_kept_right" if before else "wrong_fixed"].append(after)
        level["verbatim"].append(task.normalize_solution(row[0]) == task.normalize_solution(attempt))
    one = {str(lvl): {k: statistics.fmean(v) for k, v in s.items()} for lvl, s in sorted(stats.items())}
    return {"chain_pass@1_by_attempt": {str(k): v for k, v in sorted(by_attempt.items())},
            "one_revision": one}


def main(model_dir: Path, per_level: int = typer.Option(40, min=1, max=120),
         chains: int = typer.Option(4, min=1, max=16), out: Path | None = None,
         split: str = typer.Option("dev", help="dev, or test for a final measurement only")) -> None:
    if split not in ("dev", "test"):
        raise typer.BadParameter("dev or test", param_hint="--split")
    held_out = task.held_out_split(split)
    problems = [p for level in LEVELS for p in [q for q in held_out if q.level == level][:per_level]]
    layout = RevisionFormat.from_model_dir(model_dir) or task.QUESTION_FIRST
    report = {"model_dir": str(model_dir), "split": split, "questions_per_level": per_level,
              "chains": chains, "revision_template": layout.template,
              "copy_probe_nll": copy_probe(model_dir, problems, layout),
              **asyncio.run(chains_and_one_revision(model_dir, problems, chains, layout))}
    text = json.dumps(report, indent=1)
    if out is not None:
        out.write_text(text + "\n")
    typer.echo(text)


if __name__ == "__main__":
    typer.run(main)
