"""Sequential revisions (Snell et al. §6): parallel chains of attempts, each revising the chain's
last. The budget is split into ``parallel`` chains × ``sequential`` attempts by ``ratio`` =
sequential / parallel. Two ways to revise, by ``mode``:

- ``revise``: the paper's; each attempt sees the chain's most recent (up to 4) earlier attempts
  through the generator's revise prompt. The answer is hierarchical best-of-N weighted (within each
  chain, then across chains) or flat majority.
- ``check_repair``: for a generator with a check form (``check_repair.py``); the last attempt is
  checked step by step and continued from its first failed step, repaired. Each earlier attempt of a
  chain failed a check, so the answer is chosen among the chains' last attempts (weighted or
  majority), and only those are scored.

``auto`` (the default) checks and repairs where the generator has a check form, else revises.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from pydantic import Field

from ttc_serve.router.budget import InsufficientBudget, prm_tokens_bound
from ttc_serve.router.errors import UnsupportedParams
from ttc_serve.router.selection import AnswerKey, aggregate, extract_answer, majority, rank, split_steps
from ttc_serve.router.strategies.base import Candidate, StrategyContext, StrategyParams, StrategyResult
from ttc_serve.router.strategies.check_repair import CheckAndRepair, RoundReport
from ttc_serve.router.strategies.sampling import score_candidates
from ttc_serve.router.strategies.verdict import answer_key, finish_reason

CONTEXT_ATTEMPTS = 4  # the paper keeps the 4 most recent attempts in context
MAX_PLANNED = 1024  # attempts; as RevisionParams.n


class RevisionParams(StrategyParams):
    n: int | None = Field(None, ge=1, le=1024,
                          description="attempts in all; default: what the budget pays for")
    ratio: float = Field(4.0, ge=1 / 256, le=256, description="sequential : parallel")
    selection: Literal["weighted", "majority"] = "weighted"
    mode: Literal["auto", "revise", "check_repair"] = Field(
        "auto", description="check_repair needs a generator with a check form; auto uses it where "
                            "there is one, else revise")


Mode = Literal["revise", "check_repair"]


def resolve_mode(ctx: StrategyContext, params: RevisionParams) -> Mode:
    if params.mode == "auto":
        return "revise" if ctx.check is None else "check_repair"
    if params.mode == "check_repair" and ctx.check is None:
        raise UnsupportedParams("revisions", "mode", "check_repair needs a generator with a check "
                                "form (check_template in its tokenizer_config.json); use revise")
    return params.mode


def revise_prompt(ctx: StrategyContext, attempts: Sequence[Candidate]) -> str:
    """The chain's last attempts shown with the question, in the generator's own layout."""
    if not attempts:
        return ctx.prompt
    return ctx.revision.render(ctx.prompt, [a.steps for a in attempts[-CONTEXT_ATTEMPTS:]])


def split(n: int, ratio: float) -> tuple[int, int]:
    """(parallel, sequential) with sequential / parallel close to ``ratio`` and product <= n."""
    sequential = max(1, min(n, round(math.sqrt(n * ratio))))
    return max(1, n // sequential), sequential


class SequentialRevisions:
    name: str = "revisions"
    params_model: type[StrategyParams] = RevisionParams

    def _shape(self, ctx: StrategyContext) -> tuple[int, int]:
        """(tokens, steps) of an attempt: as the samples already drawn for this prompt show them,
        else half of max_tokens with a step every 4 tokens."""
        m, seen = ctx.sampling.max_tokens, [c for c in ctx.reuse if c.steps]
        if seen:
            tokens = min(m, round(sum(c.tokens for c in seen) / len(seen)))
            return max(1, tokens), max(1, round(sum(len(c.steps) for c in seen) / len(seen)))
        return max(1, m // 2), max(1, m // 8)

    def _scoring_expected(self, ctx: StrategyContext) -> float:
        tokens, steps = self._shape(ctx)
        return ctx.meter.costs.score_worst(prm_tokens_bound(ctx.prompt_tokens, tokens, steps))

    def _plan(self, ctx: StrategyContext, ratio: float, scored: bool, mode: Mode) -> int:
        """The most attempts whose chains (``split(n, ratio)``) are expected to fit the budget, each
        attempt as long as ``_shape`` says and, revising, seeing up to 4 earlier ones, or checking
        every step of the last one and going on from its middle. A plan: each step of the chains is
        still checked before it runs (generation at its worst case)."""
        costs, p = ctx.meter.costs, ctx.prompt_tokens
        tokens, steps = self._shape(ctx)
        if mode == "check_repair":
            check = costs.generator.generation(tokens // steps + 8, 0, [tokens // steps + 1])
            first = costs.generator.generation(p, 0, [tokens])
            first += self._scoring_expected(ctx) if scored else 0.0
            later = steps * check + costs.generator.generation(p + tokens // 2, 0, [tokens // 2])
            per_attempt = [first] + [later] * CONTEXT_ATTEMPTS
        else:
            per_attempt = [costs.generator.generation(p + j * (tokens + 4) + (4 if j else 0), 0, [tokens])
                           + (self._scoring_expected(ctx) if scored else 0.0)
                           for j in range(CONTEXT_ATTEMPTS + 1)]
        remaining, best = ctx.meter.ledger.remaining, 1
        for n in range(1, MAX_PLANNED + 1):
            parallel, sequential = split(n, ratio)
            chain = sum(per_attempt[min(j, CONTEXT_ATTEMPTS)] for j in range(sequential))
            if parallel * chain <= remaining:
                best = n
            elif parallel * chain > 2 * remaining:
                break
        return best

    def scores(self, params: StrategyParams) -> bool:
        assert isinstance(params, RevisionParams)
        return params.selection == "weighted"

    def min_flops(self, ctx: StrategyContext, params: StrategyParams) -> float:
        assert isinstance(params, RevisionParams)
        resolve_mode(ctx, params)  # refuses check_repair before anything is spent where it cannot run
        costs, m = ctx.meter.costs, ctx.sampling.max_tokens
        first = costs.generator.generation(ctx.prompt_tokens, 0, [m])
        if params.selection == "weighted":
            first += costs.score_worst(prm_tokens_bound(ctx.prompt_tokens, m, m))
        return first

    def _prompt_bound(self, ctx: StrategyContext, chain: Sequence[Candidate]) -> int:
        recent = chain[-CONTEXT_ATTEMPTS:]
        # + per attempt: its steps' newlines and the attempt prefix; + the suffix (slack 16 each)
        return ctx.prompt_tokens + sum(a.tokens + len(a.steps) + 16 for a in recent) + (16 if recent else 0)

    async def run(self, ctx: StrategyContext, params: StrategyParams) -> StrategyResult:
        assert isinstance(params, RevisionParams)
        mode = resolve_mode(ctx, params)
        scored = params.selection == "weighted"
        planned = self._plan(ctx, params.ratio, scored, mode)
        # what a budget buys stops at max_samples_per_call attempts (each chain's step is an HTTP call)
        cap = ctx.sampling.max_samples_per_call
        capped = params.n is None and planned > cap
        n = params.n or min(planned, cap)
        parallel, sequential = split(n, params.ratio)
        chains: list[list[Candidate]] = [[] for _ in range(parallel)]
        for reused, chain in zip(ctx.reuse, chains, strict=False):  # difficulty samples start chains
            chain.append(reused)
        if mode == "revise":
            cut_short = False
            for step in range(sequential):
                cut_short = await self._revise(ctx, params, chains, step, scored) or cut_short
            key = await answer_key(ctx, [a.answer for chain in chains for a in chain])
            return _capped(self._select(chains, params, cut_short, parallel, sequential, mode, None, key),
                           capped)
        # check and repair: first attempts (scored once they are final), then revision rounds
        cut_short = await self._revise(ctx, params, chains, 0, False)
        assert ctx.check is not None
        repairer, rounds = CheckAndRepair(ctx, ctx.check), RoundReport()
        reserve = self._scoring_expected(ctx) * len(chains) if scored else 0.0
        active = [c for c in chains if c]
        for step in range(1, sequential):
            if not active:
                break
            lengths = [len(c) for c in active]
            seed = None if ctx.sampling.seed is None else ctx.sampling.seed + step * 7_919
            report = await repairer.revise(active, reserve, seed)
            rounds.checked += report.checked
            rounds.settled += report.settled
            rounds.repaired += report.repaired
            rounds.cut_short = rounds.cut_short or report.cut_short
            active = [c for c, before in zip(active, lengths, strict=True) if len(c) > before]
            ctx.report(_leading(chains))
        if scored:
            await score_candidates(ctx, [c[-1] for c in chains if c and c[-1].step_scores is None],
                                   params.aggregation)
            for chain in (c for c in chains if c):
                chain[-1].score = aggregate(chain[-1].step_scores or [], params.aggregation)
        key = await answer_key(ctx, [a.answer for chain in chains for a in chain])
        return _capped(self._select(chains, params, cut_short or rounds.cut_short, parallel, sequential,
                                    mode, rounds, key), capped)

    async def _revise(self, ctx: StrategyContext, params: RevisionParams, chains: list[list[Candidate]],
                      step: int, scored: bool) -> bool:
        """A new attempt for each chain still short of ``step + 1`` through the revise prompt (the
        question alone for a first attempt), as far as the budget goes; True if it cut any."""
        todo = [c for c in chains if len(c) <= step]
        if not todo:
            return False
        sampling, costs, ledger = ctx.sampling, ctx.meter.costs, ctx.meter.ledger
        bounds = [self._prompt_bound(ctx, c) for c in todo]
        # generation at its worst case; the PRM pass at its expected cost (score_candidates
        # then scores what the budget still pays for, at the real lengths)
        per_attempt = [costs.generator.generation(b, 0, [sampling.max_tokens]) for b in bounds]
        if scored:
            per_attempt = [w + self._scoring_expected(ctx) for w in per_attempt]
        affordable = 0  # advance only the chains the budget still pays for
        while affordable < len(todo) and sum(per_attempt[:affordable + 1]) <= ledger.remaining:
            affordable += 1
        cut_short = affordable < len(todo)
        todo, bounds = todo[:affordable], bounds[:affordable]
        if not todo:
            return cut_short
        seed = None if sampling.seed is None else sampling.seed + step * 7_919
        result = await ctx.meter.generate(
            sampling.request([revise_prompt(ctx, c) for c in todo], 1, seed=seed), bounds)
        attempts = [Candidate(text=row[0].text, finish_reason=row[0].finish_reason,
                              tokens=row[0].tokens, answer=extract_answer(row[0].text),
                              steps=split_steps(row[0].text, sampling.step_delimiter),
                              logprobs=row[0].logprobs)
                    for row in result.completions]
        if scored:
            await score_candidates(ctx, attempts, params.aggregation)
        for chain, attempt in zip(todo, attempts, strict=True):
            chain.append(attempt)
        ctx.report(_leading(chains))
        return cut_short

    def _select(self, chains: list[list[Candidate]], params: RevisionParams, cut_short: bool,
                parallel: int, sequential: int, mode: Mode, rounds: RoundReport | None,
                key: AnswerKey) -> StrategyResult:
        attempts = [a for chain in chains for a in chain]
        if not attempts:  # the engine turns this into a 400 naming flops_budget
            raise InsufficientBudget(0.0, 0.0)

        def answer_of(a: Candidate) -> str | None:
            return key(a.answer)

        def score(a: Candidate) -> float:
            return a.score or 0.0

        def best(group: list[Candidate]) -> Candidate:
            return max(group, key=score)

        if mode == "check_repair":  # every earlier attempt of a chain failed one of its checks
            finals = [c[-1] for c in chains if c]
            weight = (lambda a: 1.0) if params.selection == "majority" else score
            ranked = rank(finals, answer_of, weight, best)
        elif params.selection == "majority":  # each answer shown by its latest attempt
            ranked = rank(attempts, answer_of, lambda a: 1.0, lambda group: group[-1])
        else:  # hierarchical: the best answer within each chain, then across the chains
            picks = [rank(chain, answer_of, score, best)[0] for chain in chains if chain]
            ranked = rank(picks, answer_of, score, best)
        trace = [{"chain": i, "attempt": j, **a.trace()} for i, chain in enumerate(chains)
                 for j, a in enumerate(chain)]
        return StrategyResult(
            choices=[a.choice() for a in ranked],
            compute_finish_reason=finish_reason(ranked[0].answer, cut_short),
            params={"n": len(attempts), "parallel": parallel, "sequential": sequential,
                    "ratio": params.ratio, "selection": params.selection,
                    "aggregation": params.aggregation, "mode": mode,
                    **({"checks": rounds.checked, "settled": rounds.settled,
                        "repairs": rounds.repaired} if rounds else {})},
            samples=len(attempts), trace=trace)


def _leading(chains: list[list[Candidate]]) -> str | None:
    """Progress: the vote of the chains' latest attempts."""
    return majority([chain[-1].answer for chain in chains if chain])


def _capped(result: StrategyResult, capped: bool) -> StrategyResult:
    if capped:
        result.params["n_capped"] = True
    return result
