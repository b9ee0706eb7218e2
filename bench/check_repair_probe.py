"""Check-and-repair revisions of a generator with a check form (``ttc-serve train checker``;
docs/reviser.md, row 20), on the dev split (the test split with ``--split test``, for a final
measurement only), levels 2-4, through a vLLM CPU server and the service's own revision code
(``bench/revision_chains.py``).

Reported: pass@1 of attempts 1..4 a level, and for the first attempts how exact their checks are
against the true result, how many slipped steps they catch, how many valid steps they flag, and how
many attempts the first revision changes.

Usage: ``python -m bench.check_repair_probe DIR [--per-level 100] [--chains 4] [--out FILE]``.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

import typer

from bench.revision_chains import QuestionChains, pass_at_1_by_attempt, run_chains
from models.check_format import CheckFormat
from models.cost import FlopsModel
from models.embedded import task
from models.launcher import ServerSpec, VllmServer, start_all
from models.vllm_http import HttpBackendConfig, VllmGenerator, VllmVerifier
from router.budget import CostModels

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
    chains: int = 0

    def add(self, chains: QuestionChains, form: CheckFormat) -> None:
        """The checks of each chain's first attempt, against the true value of each step."""
        for attempts in chains.attempts:
            self.chains += 1
            self.changed += attempts[1] != attempts[0]
            for step in filter(None, map(form.parse_step, task.split_steps(attempts[0]))):
                if (match := task.STEP_RE.match(step.text)) is None:
                    continue
                lhs, op, rhs = int(match[1]), match[2], int(match[3])
                true = lhs + rhs if op == "+" else lhs - rhs
                said = chains.checks.get(step.expression)
                flagged = said is not None and said != step.written
                self.checks += 1
                self.exact += said == true
                if step.written == true:
                    self.valid += 1
                    self.valid_flagged += flagged
                else:
                    self.slips += 1
                    self.slips_caught += flagged

    def rates(self) -> dict[str, float]:
        return {"checks_exact": round(self.exact / max(self.checks, 1), 3),
                "slips_caught": round(self.slips_caught / max(self.slips, 1), 3),
                "valid_flagged": round(self.valid_flagged / max(self.valid, 1), 3),
                "attempts_changed": round(self.changed / max(self.chains, 1), 3)}


async def probe(model_dir: Path, per_level: int, chains: int, split: str) -> dict[str, object]:
    form = CheckFormat.from_model_dir(model_dir)
    if form is None:
        raise typer.BadParameter(f"{model_dir} names no check form (check_template)")
    held_out = task.held_out_split(split)
    problems = [p for level in LEVELS for p in [q for q in held_out if q.level == level][:per_level]]
    server = VllmServer(ServerSpec(model_dir, "probe", max_model_len=640))
    model = FlopsModel.from_model_dir(model_dir)
    try:
        await start_all([server], 300)
        generator = VllmGenerator(HttpBackendConfig(server.base_url, "probe", 640, timeout_s=900))
        # no PRM: nothing here is scored, so the verifier is never called
        unused = VllmVerifier(HttpBackendConfig(server.base_url, "probe", 640), step_tag="")
        try:
            results = await run_chains(generator, unused, CostModels(model, model), form, problems, chains)
        finally:
            await generator.aclose()
            await unused.aclose()
    finally:
        server.stop()
    tally = {level: CheckTally() for level in LEVELS}
    for result in results:
        tally[result.problem.level].add(result, form)
    by_attempt = pass_at_1_by_attempt(results)
    return {"model": str(model_dir), "split": split, "per_level": per_level, "chains": chains,
            "attempts": {level: [round(p, 4) for p in by_attempt[level]] for level in LEVELS},
            "first_revision": {level: t.rates() for level, t in tally.items()}}


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
