"""Answers, step splitting and the final-answer selectors shared by every strategy."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

Aggregation = Literal["last", "min", "prod"]
# how votes compare final answers: as strings, or as mathematical objects (math-verify: "0.5" and
# "\\frac{1}{2}" are one answer)
AnswerMatch = Literal["exact", "math"]
AnswerKey = Callable[[str | None], str | None]
T = TypeVar("T")

_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_ANSWER_LINE = re.compile(r"^\s*(?:final\s+)?answer\s*(?:[:=]|\s)\s*(\S.*?)\s*$", re.IGNORECASE)
# "The answer is 18." / "The final answer is: 18": the sentence instruction-tuned models end with
# (Math-Shepherd's and Minerva's convention); the answer runs to the end of its clause
_ANSWER_SENTENCE = re.compile(r"\b(?:the\s+)?(?:final\s+)?answer\s+is\s*:?\s*(\S.*?)\s*(?:[.,;](?:\s|$)|$)",
                              re.IGNORECASE)


def extract_answer(text: str) -> str | None:
    """The final answer: the last non-empty ``\\boxed{..}``, else the last line that gives one
    (``answer: ..``, or a sentence ``the answer is ..``); None if none does (an empty box is no
    answer, and must not win a vote)."""
    boxed = [b.strip() for b in _BOXED.findall(text) if b.strip()]
    if boxed:
        return str(boxed[-1])
    for line in reversed(text.splitlines()):
        match = _ANSWER_LINE.match(line)
        if match and match.group(1).strip():
            return match.group(1).strip()
        sentences = _ANSWER_SENTENCE.findall(line)
        if sentences and sentences[-1].strip():
            return str(sentences[-1]).strip()
    return None


def answer_classes(answers: Sequence[str | None], match: AnswerMatch) -> AnswerKey:
    """A key for voting: each answer mapped to the first answer of its class (itself, for
    ``exact``). ``math`` compares every distinct answer with the classes found so far by
    math-verify; it is CPU work, so callers in async code run it in a thread."""
    if match == "exact":
        return lambda answer: answer
    from math_verify import parse, verify

    classes: list[tuple[str, list[object]]] = []
    key: dict[str, str] = {}
    for answer in dict.fromkeys(a for a in answers if a is not None):
        # no signal-based timeouts: they work only in the main thread, and this runs in a worker
        parsed = parse(f"${answer}$", parsing_timeout=None)
        same = next((first for first, other in classes
                     if parsed and other and verify(other, parsed, timeout_seconds=None)), None)
        if same is None:
            classes.append((answer, parsed))
        key[answer] = same or answer
    return lambda answer: None if answer is None else key.get(answer, answer)


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


def rank(pool: Sequence[T], answer_of: Callable[[T], str | None], weight_of: Callable[[T], float],
         pick: Callable[[list[T]], T]) -> list[T]:
    """One item per distinct final answer, best answer first: answers ranked by their summed weight
    (a weighted vote with PRM scores, a vote count with weight 1; ties to the answer seen first),
    each represented by ``pick`` of the items that give it. Items without an answer do not vote;
    when none has one, the single ``pick`` of them all."""
    totals: dict[str, float] = defaultdict(float)
    groups: dict[str, list[T]] = defaultdict(list)
    for item in pool:
        answer = answer_of(item)
        if answer is not None:
            totals[answer] += weight_of(item)
            groups[answer].append(item)
    if not totals:
        return [pick(list(pool))] if pool else []
    return [pick(groups[a]) for a in sorted(totals, key=lambda a: -totals[a])]


def majority(answers: Sequence[str | None]) -> str | None:
    counts: dict[str, int] = defaultdict(int)
    for answer in answers:
        if answer is not None:
            counts[answer] += 1
    if not counts:
        return None
    return max(counts, key=lambda a: counts[a])
