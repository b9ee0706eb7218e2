"""Difficulty prediction with the verifier (Snell et al. §3.2): draw a few samples, score their final
steps with the PRM, average, and bin by thresholds fitted on the calibration split.

Unlike the paper we charge the prediction to the request's budget (account ``difficulty``), and
hand its samples to the chosen strategy so that they are not wasted. Bin 1 is the easiest (highest
predicted score), bin ``len(thresholds) + 1`` the hardest, as the task's levels are numbered.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ttc_serve.router.strategies.base import Candidate, StrategyContext
from ttc_serve.router.strategies.sampling import draw

BINS = 5


@dataclass(frozen=True)
class Difficulty:
    """A prompt's predicted difficulty: the score, its bin, and the samples it drew (reused by the
    strategy, since they are paid for)."""

    score: float
    bin: int
    samples: int
    candidates: list[Candidate] = field(default_factory=list)


class DifficultyPredictor(Protocol):
    async def predict(self, ctx: StrategyContext) -> Difficulty: ...


def bin_of(score: float, thresholds: Sequence[float]) -> int:
    """thresholds ascend; a score at or above the top one is bin 1, below the lowest the last bin."""
    return len(thresholds) + 1 - bisect.bisect_right(list(thresholds), score)


def fit_thresholds(scores: Sequence[float], bins: int = BINS) -> list[float]:
    """Quantile edges that split ``scores`` into ``bins`` groups of (nearly) equal size.

    A score at an edge goes to the easier bin (``bin_of``), so when the lowest edge falls on the
    minimum (ties at the bottom, e.g. every question the model never solves has oracle pass@1 0) it
    is moved up to the next distinct score: the hardest bin then holds those tied questions instead
    of being empty."""
    ordered = sorted(scores)
    if not ordered:
        raise ValueError("no scores to fit thresholds on")
    edges = [ordered[min(len(ordered) - 1, (len(ordered) * q) // bins)] for q in range(1, bins)]
    above = [s for s in ordered if s > ordered[0]]
    if edges[0] == ordered[0] and above:
        edges[0] = above[0]
        edges = [max(e, edges[0]) for e in edges]
    return edges


@dataclass(frozen=True)
class VerifierDifficulty:
    """The mean PRM score (last step, as the paper) of ``samples`` fresh samples, binned."""

    samples: int
    thresholds: tuple[float, ...]

    async def predict(self, ctx: StrategyContext) -> Difficulty:
        metered = StrategyContext(prompt=ctx.prompt, prompt_tokens=ctx.prompt_tokens, question=ctx.question,
                                  meter=ctx.meter.with_account("difficulty"), sampling=ctx.sampling,
                                  progress=ctx.progress)
        candidates, _ = await draw(metered, self.samples, scored=True, aggregation="last")
        score = sum(c.score or 0.0 for c in candidates) / max(1, len(candidates))
        return Difficulty(score=score, bin=bin_of(score, self.thresholds), samples=len(candidates),
                          candidates=candidates)


@dataclass(frozen=True)
class OracleDifficulty:
    """Evaluation only: the true bin of a prompt (from the model's measured pass rate), for free."""

    bins: Callable[[str], int]

    async def predict(self, ctx: StrategyContext) -> Difficulty:
        return Difficulty(score=float("nan"), bin=self.bins(ctx.prompt), samples=0)
