"""Check-and-repair revisions of a generator that has the check form (``ttc-serve train checker``;
docs/reviser.md, row 20c), on the dev split (the test split with ``--split test``, for a final
measurement only), levels 2-4, through a vLLM CPU server.

A revision: every step of the last attempt is checked with the check form (``check a op b=``, greedy,
one short request per step); at the first step whose written result differs from its check the
attempt is cut, that step's result replaced by the check's, and the solve form goes on from there
(T = 0.8); an attempt whose checks all pass is kept. The grader only scores. Reported: pass@1 of
attempts 1..4 a level, and for the first revision how exact the checks are against the true result,
how many slipped steps they catch, how many valid steps they flag, and how many attempts change.

Usage: ``python -m bench.check_repair_probe DIR [--per-level 100] [--chains 4] [--out FILE]``.
"""

from __future__ import annotations

import asyncio
import json
import statistics
from dataclasses import dataclass
from pathlib import Path

import typer

from bench.eval_models import sample
from models.embedded import checking, task
from models.launcher import ServerSpec, VllmServer, start_all
from models.vllm_http import HttpBackendConfig, VllmGenerator

LEVELS = (2, 3, 4)


@dataclass
class CheckTally:
    checks: int = 0
    exact: int = 0
    slips: int = 0
    slips_caught: int = 0
    valid: int = 0
    valid_flagged: int = 0
    changed: int = 0


@dataclass(frozen=True)
class StepCheck:
    chain: int
    index: int
    lhs: int
    op: str
    rhs: int
    written: int


def step_checks(chains: list[str]) -> list[StepCheck]:
    out = []
    for chain, attempt in enumerate(chains):
        for index, step in enumerate(task.split_steps(attempt)):
            if match := task.STEP_RE.match(step):
                out.append(StepCheck(chain, index, int(match[1]), match[2], int(match[3]), int(match[4])))
    return out


def first_failures(steps: list[StepCheck], said: list[str]) -> dict[int, tuple[int, str]]:
    """Per chain, the index of the first step whose written result differs from what its check
    said, and that step fixed to the check's value; a check that says no number flags nothing."""
    failures: dict[int, tuple[int, str]] = {}
    for step, text in zip(steps, said, strict=True):
        checked = checking.parse_check(text)
        if checked is not None and checked != step.written and (
                step.chain not in failures or step.index < failures[step.chain][0]):
            failures[step.chain] = (step.index, f"{step.lhs}{step.op}{step.rhs}={checked}")
    return failures


def repaired_prefix(attempt: str, index: int, fixed_step: str) -> str:
    """The attempt's steps before ``index``, then the fixed step: where the solve form goes on."""
    return "".join(line + "\n" for line in task.split_steps(attempt)[:index]) + fixed_step + "\n"


def _tally(tally: dict[int, CheckTally], owners: list[task.Problem], steps: list[StepCheck],
           said: list[str]) -> None:
    for step, text in zip(steps, said, strict=True):
        checked = checking.parse_check(text)
        true = step.lhs + step.rhs if step.op == "+" else step.lhs - step.rhs
        counts = tally[owners[step.chain].level]
        counts.checks += 1
        counts.exact += checked == true
        flagged = checked is not None and checked != step.written
        if step.written == true:
            counts.valid += 1
            counts.valid_flagged += flagged
        else:
            counts.slips += 1
            counts.slips_caught += flagged


async def _revise(generator: VllmGenerator, owners: list[task.Problem], last: list[str], seed: int,
                  tally: dict[int, CheckTally] | None) -> list[str]:
    """One check-and-repair revision of every chain's last attempt."""
    steps = step_checks(last)
    said = [row[0] for row in await sample(
        generator, [checking.check_prompt(s.lhs, s.op, s.rhs) for s in steps], 1, 0.0, seed, "checks",
        max_tokens=12, stop=["\n"])]
    if tally is not None:
        _tally(tally, owners, steps, said)
    failures = first_failures(steps, said)
    cut = sorted(failures)
    prefixes = [repaired_prefix(last[c], *failures[c]) for c in cut]
    prompts = [task.solve_prompt(owners[c]) + prefix for c, prefix in zip(cut, prefixes, strict=True)]
    rest = [row[0] for row in await sample(generator, prompts, 1, 0.8, seed, "repairs")]
    revised = list(last)
    for c, prefix, text in zip(cut, prefixes, rest, strict=True):
        revised[c] = task.normalize_solution(prefix + text)
        if tally is not None:
            tally[owners[c].level].changed += 1
    return revised


async def probe(model_dir: Path, per_level: int, chains: int, split: str) -> dict[str, object]:
    held_out = task.held_out_split(split)
    problems = [p for level in LEVELS for p in [q for q in held_out if q.level == level][:per_level]]
    owners = [p for p in problems for _ in range(chains)]
    tally = {level: CheckTally() for level in LEVELS}
    server = VllmServer(ServerSpec(model_dir, "probe", max_model_len=640))
    try:
        await start_all([server], 300)
        generator = VllmGenerator(HttpBackendConfig(server.base_url, "probe", 640, timeout_s=900))
        try:
            first = [row[0] for row in await sample(
                generator, [task.solve_prompt(p) for p in owners], 1, 0.8, 101, "first attempts")]
            history = [[task.normalize_solution(text)] for text in first]
            for revision in range(1, 4):
                last = await _revise(generator, owners, [h[-1] for h in history], 101 + revision * 7919,
                                     tally if revision == 1 else None)
                for h, attempt in zip(history, last, strict=True):
                    h.append(attempt)
        finally:
            await generator.aclose()
    finally:
        server.stop()

    def pass_at_1(level: int, k: int) -> float:
        return round(statistics.fmean(float(task.grade(p, h[k]).correct)
                                      for p, h in zip(owners, history, strict=True) if p.level == level), 4)

    return {"model": str(model_dir), "split": split, "per_level": per_level, "chains": chains,
            "attempts": {level: [pass_at_1(level, k) for k in range(4)] for level in LEVELS},
            "first_revision": {level: {
                "checks_exact": round(t.exact / max(t.checks, 1), 3),
                "slips_caught": round(t.slips_caught / max(t.slips, 1), 3),
                "valid_flagged": round(t.valid_flagged / max(t.valid, 1), 3),
                "attempts_changed": round(t.changed / (per_level * chains), 3)}
                for level, t in tally.items()}}


def main(model_dir: Path, per_level: int = typer.Option(100, min=1, max=120),
         chains: int = typer.Option(4, min=1, max=16), out: Path | None = None,
         split: str = typer.Option("dev", help="dev, or test for a final measurement only")) -> None:
    if split not in ("dev", "test"):
        raise typer.BadParameter("dev or test", param_hint="--split")
    report = asyncio.run(probe(model_dir, per_level, chains, split))
    text = json.dumps(report, indent=1)
    if out:
        out.write_text(text + "\n")
    typer.echo(text)


if __name__ == "__main__":
    typer.run(main)
