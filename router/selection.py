"""Answers, step splitting and the final-answer selectors shared by every strategy."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Aggregation = Literal["last", "min", "prod"]

_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_ANSWER_LINE = re.compile(r"^\s*(?:final\s+)?answer\s*[:=]?\s*(.+?)\s*$", re.IGNORECASE)


def extract_answer(text: str) -> str | None:
    """The final answer: the last ``\\boxed{..}``, else the last ``answer: ..`` line; None if neither."""
    boxed = _BOXED.findall(text)
    if boxed:
        return str(boxed[-1]).strip()
    for line in reversed(text.splitlines()):
        match = _ANSWER_LINE.match(line)
        if match:
            return match.group(1).strip()
    return None


def split_steps(text: str, delimiter: str = "\n") -> list[str]:
    return [step.strip() for step in text.split(delimiter) if step.strip()]


def aggregate(step_scores: Sequence[float], how: Aggregation = "last") -> float:
    """One score for a solution from its step scores ("last" won in the paper)."""
    if not step_scores:
        return 0.0
    if how == "last":
        return float(step_scores[-1])
    if how == "min":
        return float(min(step_scores))
    return float(math.prod(step_scores))


@dataclass(frozen=True)
class Scored:
    answer: str | None
    score: float


def weighted_best_of_n(candidates: Sequence[Scored]) -> str | None:
    """Sum the verifier scores of candidates that share a final answer; the best total wins.
    Candidates without an answer do not vote. Ties go to the answer seen first."""
    totals: dict[str, float] = defaultdict(float)
    for cand in candidates:
        if cand.answer is not None:
            totals[cand.answer] += cand.score
    if not totals:
        return None
    return max(totals, key=lambda a: totals[a])


def majority(answers: Sequence[str | None]) -> str | None:
    counts: dict[str, int] = defaultdict(int)
    for answer in answers:
        if answer is not None:
            counts[answer] += 1
    if not counts:
        return None
    return max(counts, key=lambda a: counts[a])
