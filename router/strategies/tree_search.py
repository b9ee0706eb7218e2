"""Step-level search against the PRM: the machinery shared by beam search, DVTS and lookahead.

A search grows partial solutions one step at a time. Each round makes ONE batched generate call
(every surviving prefix, ``n`` children each, stopped at the step delimiter) and ONE batched PRM call
(every new prefix), so vLLM's batching and prefix cache do the work. What differs between the
strategies is only which children survive a round (``Survivors``) and how a child is scored
(lookahead rolls it out greedily first).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ttc_serve.models.protocols import Completion, TokenLogprob
from ttc_serve.router.budget import InsufficientBudget, prm_tokens_bound
from ttc_serve.router.selection import (
    Aggregation,
    AnswerKey,
    Scored,
    aggregate,
    extract_answer,
    rank,
    weighted_best_of_n,
)
from ttc_serve.router.strategies.base import Candidate, Choice, StrategyContext, StrategyResult
from ttc_serve.router.strategies.verdict import finish_reason


@dataclass
class Node:
    """A partial (or finished) solution: the steps generated so far, as text."""

    text: str = ""
    steps: list[str] = field(default_factory=list)
    tokens: int = 0  # generated tokens along this path
    finished: bool = False
    finish_reason: str = "stop"
    step_scores: list[float] = field(default_factory=list)
    score: float = 0.0
    group: int = 0  # the subtree it belongs to (DVTS)
    node_id: int = -1  # its index in the trace once recorded
    parent_id: int = -1
    logprobs: tuple[TokenLogprob, ...] | None = None  # of every step's sampled tokens, when asked

    def child(self, sample: Completion, delimiter: str) -> Node:
        step_text = sample.text
        ended_at_delimiter = step_text.endswith(delimiter)
        step = step_text.strip()
        steps = [*self.steps, step] if step else list(self.steps)
        done = (not ended_at_delimiter) or extract_answer(step) is not None
        logprobs = None if sample.logprobs is None else (*(self.logprobs or ()), *sample.logprobs)
        return Node(text=self.text + step_text, steps=steps, tokens=self.tokens + sample.tokens,
                    finished=done, finish_reason=sample.finish_reason, group=self.group,
                    parent_id=self.node_id, logprobs=logprobs)

    def choice(self) -> Choice:
        # a beam the search left unfinished was cut short, whatever its last step's sample said
        reason = self.finish_reason if self.finished else "length"
        return Choice(self.text, reason, extract_answer(self.text), self.tokens, self.logprobs)


# Which children survive a round: (children grouped by parent, number to keep) -> survivors
Survivors = Callable[[list[list[Node]], int], list[Node]]


def keep_top(children: list[list[Node]], keep: int) -> list[Node]:
    """Beam search: the ``keep`` best children overall."""
    flat = [c for group in children for c in group]
    return sorted(flat, key=lambda n: n.score, reverse=True)[:keep]


def keep_best_per_parent(children: list[list[Node]], keep: int) -> list[Node]:
    """DVTS: each subtree keeps its single best child."""
    return [max(group, key=lambda n: n.score) for group in children if group]


@dataclass(frozen=True)
class SearchConfig:
    n: int  # candidates in the first round
    width: int  # children per survivor (M)
    max_rounds: int
    step_tokens: int  # max tokens of one step
    aggregation: Aggregation
    survivors: Survivors
    keep: int  # survivors per round (beam search: N / M)
    lookahead: int = 0  # greedy rollout steps before scoring a child
    expected_step_tokens: float = 0.0  # for planning the PRM pass (0: plan with step_tokens)

    def __post_init__(self) -> None:
        if self.expected_step_tokens <= 0:
            object.__setattr__(self, "expected_step_tokens", float(self.step_tokens))


class TreeSearch:
    def __init__(self, ctx: StrategyContext, config: SearchConfig):
        self.ctx = ctx
        self.config = config
        self.trace: list[dict[str, object]] = []
        self.rounds = 0  # rounds completed
        self.first_n = 0  # first-round samples actually drawn (the plan may shrink to fit the budget)
        self.delimiter = ctx.sampling.step_delimiter

    # ---- budget

    def _prompt_bound(self, node: Node) -> int:
        return self.ctx.prompt_tokens + node.tokens + len(node.steps) + 1

    def round_worst(self, parents: Sequence[Node], n: int) -> float:
        """Worst case of one round (expand, roll out, score), every step running to ``step_tokens``."""
        return (self.round_generation_worst(parents, n)
                + self.round_scoring(parents, n, self.config.step_tokens))

    def round_generation_worst(self, parents: Sequence[Node], n: int) -> float:
        """The round's generation (and lookahead rollouts), every step running to ``step_tokens``:
        what must fit before the round starts."""
        costs, m, k = self.ctx.meter.costs, self.config.step_tokens, self.config.lookahead
        total = 0.0
        for parent in parents:
            p = self._prompt_bound(parent)
            total += costs.generator.generation(p, 0, [m] * n)
            total += n * sum(costs.generator.generation(p + (j + 1) * (m + 1), 0, [m]) for j in range(k))
        return total

    def round_scoring(self, parents: Sequence[Node], n: int, step_tokens: float) -> float:
        """The round's PRM pass if every new step is ``step_tokens`` long."""
        costs, k = self.ctx.meter.costs, self.config.lookahead
        total = 0.0
        for parent in parents:
            p = self._prompt_bound(parent)
            total += n * costs.score_worst(prm_tokens_bound(p, round((k + 1) * step_tokens),
                                                            len(parent.steps) + k + 1))
        return total

    def round_planned(self, parents: Sequence[Node], n: int) -> float:
        """Generation at its worst case (the guarantee), the PRM pass at its expected cost: it is
        checked against the real lengths once they are known, and children it can no longer pay for
        are left unscored (score 0, last in line)."""
        return (self.round_generation_worst(parents, n)
                + self.round_scoring(parents, n, self.config.expected_step_tokens))

    # ---- one round

    async def expand(self, parents: list[Node], n: int, round_index: int) -> list[list[Node]]:
        sampling = self.ctx.sampling
        seed = None if sampling.seed is None else sampling.seed + round_index * 7_919
        result = await self.ctx.meter.generate(sampling.request(
            [self.ctx.prompt + p.text for p in parents], n, max_tokens=self.config.step_tokens,
            stop=[self.delimiter], seed=seed), [self._prompt_bound(p) for p in parents])
        children = [[parent.child(c, self.delimiter) for c in row]
                    for parent, row in zip(parents, result.completions, strict=True)]
        for child in (c for row in children for c in row):
            if child.tokens + self.config.step_tokens > sampling.max_tokens and not child.finished:
                child.finished, child.finish_reason = True, "length"  # no room for another step
        return children

    async def rollout_ends(self, nodes: list[Node]) -> list[Node]:
        """Lookahead: extend each unfinished node greedily by up to k steps (charged like any call)."""
        ends = list(nodes)
        for _ in range(self.config.lookahead):
            todo = [i for i, node in enumerate(ends) if not node.finished]
            if not todo:
                break
            result = await self.ctx.meter.generate(self.ctx.sampling.request(
                [self.ctx.prompt + ends[i].text for i in todo], 1, max_tokens=self.config.step_tokens,
                stop=[self.delimiter], greedy=True), [self._prompt_bound(ends[i]) for i in todo])
            for i, row in zip(todo, result.completions, strict=True):
                ends[i] = ends[i].child(row[0], self.delimiter)
        return ends

    async def score(self, nodes: list[Node]) -> None:
        """One PRM call for all nodes (through their lookahead rollouts when configured)."""
        targets = await self.rollout_ends(nodes) if self.config.lookahead else nodes
        meter = self.ctx.meter
        with_steps = [i for i, t in enumerate(targets) if t.steps]
        tokens = await meter.scoring_tokens(
            [self.ctx.question] * len(with_steps), [targets[i].steps for i in with_steps],
            [prm_tokens_bound(self.ctx.prompt_tokens, targets[i].tokens, len(targets[i].steps))
             for i in with_steps]) if with_steps else []
        scorable, bounds, total = [], [], 0.0
        remaining = meter.ledger.remaining
        for i, count in zip(with_steps, tokens, strict=True):  # in order, while the budget pays
            if not meter.scorable(count):  # over the verifier's context: left unscored
                continue
            cost = meter.costs.score_worst(count)
            if total + cost > remaining:
                break
            scorable.append(i)
            bounds.append(count)
            total += cost
        if scorable:
            result = await self.ctx.meter.score([self.ctx.question] * len(scorable),
                                                [targets[i].steps for i in scorable], bounds)
            for i, scores in zip(scorable, result.step_scores, strict=True):
                own = len(nodes[i].steps)
                nodes[i].step_scores = scores[:own]
                # lookahead: the step's value is the PRM's view at the end of the rollout
                nodes[i].score = (scores[-1] if self.config.lookahead
                                  else aggregate(scores[:own], self.config.aggregation))
        for node in nodes:
            if not node.steps:
                node.score = 0.0

    def record(self, nodes: list[Node], round_index: int) -> None:
        for node in nodes:
            node.node_id = len(self.trace)
            self.trace.append({"id": node.node_id, "round": round_index, "parent": node.parent_id,
                               "group": node.group, "step": node.steps[-1] if node.steps else "",
                               "score": node.score, "finished": node.finished})

    # ---- the search

    async def run(self) -> tuple[list[Node], list[Node], bool]:
        """Returns (finished nodes, nodes still open at the end, whether the budget cut it short)."""
        config = self.config
        finished: list[Node] = []
        parents, n = [Node()], config.n
        cut_short = False
        for round_index in range(config.max_rounds):
            affordable, n, shrunk = self._affordable(parents, n, round_index)
            if round_index == 0:
                self.first_n = n
            cut_short = cut_short or shrunk
            if not affordable:  # the open beams stay candidates (best partial answers)
                return finished, parents if round_index else [], True
            parents = affordable
            try:
                children = await self.expand(parents, n, round_index)
                if round_index == 0:  # the first samples split into subtrees of ``width`` (DVTS)
                    for i, child in enumerate(children[0]):
                        child.group = i // max(1, config.width)
                    children = _by_group(children[0])
                flat = [c for group in children for c in group]
                await self.score(flat)
            except InsufficientBudget:
                return finished, parents if round_index else [], True
            self.record(flat, round_index)
            self.rounds = round_index + 1
            finished += [c for c in flat if c.finished]
            self.ctx.report(weighted_best_of_n([Scored(extract_answer(n.text), n.score) for n in finished]))
            survivors = config.survivors(children, config.keep)
            parents = [s for s in survivors if not s.finished]
            if not parents:
                return finished, [], cut_short
            n = config.width
        return finished, parents, cut_short

    def _affordable(self, parents: list[Node], n: int, round_index: int) -> tuple[list[Node], int, bool]:
        """Shrink a round to what the budget pays for: fewer first samples (a multiple of the width)
        in round 0, then only the best parents. Returns (parents, n, whether it had to shrink)."""
        remaining = self.ctx.meter.ledger.remaining
        if round_index == 0:
            step = max(1, self.config.width)
            fitting = n
            while fitting > 0 and self.round_planned(parents, fitting) > remaining:
                fitting -= step if fitting > step else 1  # below one beam's worth: down to 1
            return (parents if fitting else []), fitting, fitting < n
        ranked = sorted(parents, key=lambda node: node.score, reverse=True)
        while ranked and self.round_planned(ranked, n) > remaining:
            ranked.pop()
        return ranked, n, len(ranked) < len(parents)


def reused_node(candidate: Candidate, aggregation: Aggregation) -> Node:
    """A complete, already scored sample (difficulty prediction) as a finished beam: it joins the
    final vote."""
    scores = candidate.step_scores or []
    return Node(text=candidate.text, steps=list(candidate.steps), tokens=candidate.tokens,
                finished=True, finish_reason=candidate.finish_reason, step_scores=list(scores),
                score=aggregate(scores, aggregation), group=-1, logprobs=candidate.logprobs)


def _by_group(nodes: list[Node]) -> list[list[Node]]:
    groups: dict[int, list[Node]] = {}
    for node in nodes:
        groups.setdefault(node.group, []).append(node)
    return list(groups.values())


def select_answer(finished: list[Node], active: list[Node], cut_short: bool,
                  params: dict[str, object], trace: list[dict[str, object]],
                  key: AnswerKey = lambda answer: answer) -> StrategyResult:
    """Best-of-N weighted over the finished beams; if none finished, the best partial one."""
    pool = finished or active
    if not pool:
        raise InsufficientBudget(0.0, 0.0)
    # answers ranked by their summed beam score, each shown by its best-scored beam
    ranked = rank(pool, lambda n: key(extract_answer(n.text)), lambda n: n.score,
                  lambda group: max(group, key=lambda n: n.score))
    choices = [n.choice() for n in ranked]
    return StrategyResult(choices=choices, compute_finish_reason=finish_reason(choices[0].answer, cut_short),
                          params={**params, "finished": len(finished)},
                          samples=len(trace), trace=trace)


def size_n(ctx: StrategyContext, width: int, expected_step_tokens: float, expected_steps: float,
           lookahead: int = 0, step_tokens: int | None = None) -> int:
    """The largest N (a multiple of the width) whose search is expected to fit the budget: each of
    ``expected_steps`` rounds draws N children of ``expected_step_tokens`` and the PRM scores each
    child's whole prefix; plus, per candidate, the margin a round's generation needs at its worst
    case (``step_tokens``), so that the last rounds can still start. This is a plan, not a promise:
    every round is checked before it runs, and shrinks (fewer first samples, then fewer parents)."""
    costs, p, step = ctx.meter.costs, ctx.prompt_tokens, expected_step_tokens
    per_candidate = 0.0
    rounds = math.ceil(expected_steps)
    for r in range(rounds):
        context = round(p + r * (step + 1))
        per_candidate += costs.generator.span(context, round(context + step * (1 + lookahead)))
        per_candidate += costs.score_worst(prm_tokens_bound(p, round((r + 1 + lookahead) * step),
                                                            r + 1 + lookahead))
    if step_tokens:
        last = round(p + rounds * (step + 1))
        per_candidate += costs.generator.span(last, last + step_tokens * (1 + lookahead))
    n = math.floor(ctx.meter.ledger.remaining / per_candidate)
    return max(width, (n // width) * width) if n >= 1 else 0


def expected_shape(candidates: Sequence[Candidate], step_tokens: int, expected_steps: int,
                   expected_step_tokens: int | None) -> tuple[float, float]:
    """(steps, tokens per step) to plan with: the caller's, else what the samples already drawn for
    this prompt show (difficulty prediction), else half of the per-step cap."""
    shaped = [c for c in candidates if c.steps]
    if expected_step_tokens is not None or not shaped:
        return float(expected_steps), float(expected_step_tokens or max(1, step_tokens // 2))
    steps = sum(len(c.steps) for c in shaped) / len(shaped)
    per_step = sum(c.tokens for c in shaped) / sum(len(c.steps) for c in shaped)
    return max(1.0, steps), min(float(step_tokens), max(1.0, per_step))
