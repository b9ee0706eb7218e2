"""One check-and-repair revision of a set of chains: the revisions strategy's mode for a generator
that has a check form (``models/check_format.py``; why it revises this way: docs/reviser.md).

A revision checks every checkable step of the chain's last attempt with the generator's check form
(greedy, one short completion per step), cuts the attempt at the first step whose written result
differs from its check, writes the check's result there, and lets the generator go on from that
prefix at the request's temperature. An attempt whose checks all pass is *settled*: checking it
again would say the same (greedy), so its chain stops there and spends nothing more.

Checks are greedy, so one check per distinct expression per request is enough: a chain's repaired
prefix was checked already, and chains that share steps share their checks. Every check and every
continuation goes through the meter, so ``compute.flops_used`` counts all of them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from ttc_serve.models.check_format import CheckedStep, CheckFormat
from ttc_serve.models.protocols import GenerationRequest, GenerationResult
from ttc_serve.router.selection import extract_answer, split_steps
from ttc_serve.router.strategies.base import Candidate, StrategyContext


@dataclass(frozen=True)
class Failure:
    """The first step of an attempt whose written result its check contradicts."""

    index: int
    step: CheckedStep
    checked: int

    def prefix(self, attempt: Candidate) -> str:
        """The attempt's steps before this one, then this one repaired: where the generator goes on."""
        return "".join(s + "\n" for s in attempt.steps[:self.index]) + self.step.repaired(self.checked) + "\n"


@dataclass
class RoundReport:
    checked: int = 0  # check completions run
    settled: int = 0  # chains whose last attempt passed every check
    repaired: int = 0  # chains given a new attempt
    cut_short: bool = False  # the budget left some chain unchecked or unrepaired


@dataclass
class CheckAndRepair:
    """The checks said so far in one request, and the revision rounds that use them."""

    ctx: StrategyContext
    form: CheckFormat
    said: dict[str, int | None] = field(default_factory=dict)  # expression -> the check's value

    def checkable(self, attempt: Candidate) -> list[CheckedStep]:
        return [s for s in (self.form.parse_step(step) for step in attempt.steps) if s is not None]

    def first_failure(self, attempt: Candidate) -> Failure | None:
        """The first step whose check states a value other than the written one (a check that
        states no number flags nothing)."""
        for index, step in enumerate(attempt.steps):
            parsed = self.form.parse_step(step)
            if parsed is None:
                continue
            checked = self.said.get(parsed.expression)
            if checked is not None and checked != parsed.written:
                return Failure(index, parsed, checked)
        return None

    def unchecked(self, attempts: list[Candidate]) -> list[str]:
        """Expressions of these attempts not checked yet, each once, in order."""
        seen = dict.fromkeys(s.expression for a in attempts for s in self.checkable(a))
        return [e for e in seen if e not in self.said]

    async def _count(self, prompts: list[str]) -> list[int]:
        async with asyncio.TaskGroup() as group:  # a failed count cancels the others
            tasks = [group.create_task(self.ctx.meter.generator.count_tokens(p)) for p in prompts]
        return [t.result() for t in tasks]

    async def revise(self, chains: list[list[Candidate]], reserve: float, seed: int | None) -> RoundReport:
        """One revision of each chain (its last attempt checked, then repaired where a check
        fails), as far as the budget pays for it with ``reserve`` FLOPs kept back; appends the new
        attempts to their chains. A chain given no new attempt is done: settled, out of room, or
        out of budget (which only shrinks)."""
        report = RoundReport()
        costs, ledger, form = self.ctx.meter.costs, self.ctx.meter.ledger, self.form
        expressions = self.unchecked([c[-1] for c in chains])
        counts = dict(zip(expressions, await self._count([form.prompt(e) for e in expressions]),
                          strict=True))
        # Admit chains in order while their checks and a worst-case repair fit what remains.
        admitted, to_check, planned = [], [], 0.0
        for chain in chains:
            new = [e for e in self.unchecked([chain[-1]]) if e not in to_check]
            cost = sum(costs.generator.generation(counts[e], 0, [form.max_tokens]) for e in new)
            repair = self._repair_bound(chain[-1])
            cost += costs.generator.generation(repair, 0, [self.ctx.sampling.max_tokens])
            if planned + cost > ledger.remaining - reserve:
                report.cut_short = True
                break
            planned += cost
            admitted.append(chain)
            to_check.extend(new)
        if to_check:
            result = await self.ctx.meter.generate(GenerationRequest(
                prompts=[form.prompt(e) for e in to_check], n=1, max_tokens=form.max_tokens,
                temperature=0.0, stop=[form.stop]), [counts[e] for e in to_check])
            for expression, row in zip(to_check, result.completions, strict=True):
                self.said[expression] = form.read(row[0].text)
            report.checked = len(to_check)
        failing = [(chain, failure) for chain in admitted
                   if (failure := self.first_failure(chain[-1])) is not None]
        report.settled = len(admitted) - len(failing)
        if failing:
            await self._repair(failing, reserve, seed, report)
        return report

    def _repair_bound(self, attempt: Candidate) -> int:
        # the prompt, the attempt's steps and their newlines, a repaired result (slack 16)
        return self.ctx.prompt_tokens + attempt.tokens + len(attempt.steps) + 16

    async def _repair(self, failing: list[tuple[list[Candidate], Failure]], reserve: float,
                      seed: int | None, report: RoundReport) -> None:
        """Continue each failing chain from its repaired prefix, within the request's max_tokens for
        the whole attempt (so that it still fits the generator and the PRM)."""
        ctx, costs = self.ctx, self.ctx.meter.costs
        prefixes = [failure.prefix(chain[-1]) for chain, failure in failing]
        counts = await self._count([ctx.prompt + p for p in prefixes])
        groups: dict[int, list[int]] = {}  # room left for the continuation -> which repairs
        planned = 0.0
        for i, count in enumerate(counts):
            room = ctx.sampling.max_tokens - (count - ctx.prompt_tokens)
            if room < 1:
                continue  # no room to go on: the chain keeps its attempt
            cost = costs.generator.generation(count, 0, [room])
            if planned + cost > ctx.meter.ledger.remaining - reserve:
                report.cut_short = True
                break
            planned += cost
            groups.setdefault(room, []).append(i)
        async with asyncio.TaskGroup() as group:
            tasks = {room: group.create_task(ctx.meter.generate(ctx.sampling.request(
                [ctx.prompt + prefixes[i] for i in members], 1, max_tokens=room,
                seed=None if seed is None else seed + room * 1_009),
                [counts[i] for i in members])) for room, members in groups.items()}
        for room, members in groups.items():
            result: GenerationResult = tasks[room].result()
            for i, row, prompt_tokens in zip(members, result.completions, result.prompt_tokens, strict=True):
                chain, text = failing[i][0], prefixes[i] + row[0].text
                chain.append(Candidate(
                    text=text, finish_reason=row[0].finish_reason,
                    tokens=prompt_tokens - ctx.prompt_tokens + row[0].tokens,
                    answer=extract_answer(text), steps=split_steps(text, ctx.sampling.step_delimiter),
                    repaired_at=failing[i][1].index))
                report.repaired += 1
