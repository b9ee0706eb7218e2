"""The embedded task: multi-step integer arithmetic with step-by-step solutions and an exact grader.

A question is a chain of additions and subtractions, e.g. ``question: 37+5-12``. A solution has one
step per line, each folding the next operand into the running value (``37+5=42``), and ends with
``answer: 30``. Difficulty is set by the number of operations and the size of the operands, and the
five named levels span "always right" to "almost never right" for the shipped small generator.

Prompt forms (shared by training, the service and the evaluation, so they live here):
- solve:   ``question: 37+5-12\\n``                       -> steps + ``answer: N\\n``
- revise:  the solve prompt and up to 4 earlier attempts (``attempt:\\n<sol>``), laid out as the
           generator was trained (``REVISION_LAYOUTS``; the checkpoint names its own) -> a new solution
- PRM:     the solve prompt followed by each step, each step ending with the step tag.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ttc_serve.models.protocols import prm_text
from ttc_serve.models.revision_format import RevisionFormat

STEP_TAG = "<step>"
ANSWER_PREFIX = "answer: "
MAX_REVISION_CONTEXT = 4  # attempts kept in a revise prompt (the paper keeps the 4 most recent)
# Revise prompt layouts. Question first (``question: ..\\nattempt:\\n..revision:\\n``) is the
# shipped generator-small's. Attempts first ends in the solve prompt itself, so that a revision
# starts from the context a fresh solution does: trained so, a reviser that cannot use an attempt
# solves afresh instead of solving worse (the model card has the measurements).
QUESTION_FIRST = RevisionFormat("{prompt}{attempts}revision:\n")
ATTEMPTS_FIRST = RevisionFormat("{attempts}{prompt}")
REVISION_LAYOUTS = {"question_first": QUESTION_FIRST, "attempts_first": ATTEMPTS_FIRST}

Setting = tuple[tuple[int, int], tuple[int, int]]  # (ops range, operand digits range)

# Named difficulty levels of the held-out splits, from "always right" to "almost never right" for the
# shipped small generator (test split: pass@1 at T=0.8 of .98 / .33 / .32 / .15 / .004, and
# coverage@16 2.4 to 14 times pass@1 from level 2 on, so that test-time compute has room to help).
LEVELS: dict[int, Setting] = {
    1: ((1, 2), (1, 1)),
    2: ((3, 4), (2, 3)),
    3: ((4, 5), (2, 3)),
    4: ((5, 6), (3, 3)),
    5: ((7, 7), (3, 3)),  # one operation more than any training question: beyond the trained lengths
}

# The settings the shipped models are trained on, in equal shares. Level 5 asks for 7 operations, one
# more than the mix holds. (These were also the first levels of the splits; the training stream keeps
# excluding the questions of those splits, so that the shipped recipes rebuild their checkpoints.)
TRAINING_MIX: dict[int, Setting] = {
    1: ((1, 2), (1, 1)),
    2: ((2, 3), (1, 2)),
    3: ((3, 4), (2, 2)),
    4: ((4, 5), (2, 3)),
    5: ((6, 6), (3, 3)),
}

STEP_RE = re.compile(r"^(-?\d+)([+-])(\d+)=(-?\d+)$")  # lhs, op, rhs, result
_QUESTION_RE = re.compile(r"^\d+(?:[+-]\d+)+$")


@dataclass(frozen=True)
class Problem:
    """A chain ``operands[0] op[0] operands[1] ...``; ``level`` is the named setting it came from."""

    operands: tuple[int, ...]
    ops: tuple[str, ...]
    level: int

    @property
    def expression(self) -> str:
        parts = [str(self.operands[0])]
        for op, value in zip(self.ops, self.operands[1:], strict=True):
            parts.append(f"{op}{value}")
        return "".join(parts)

    @property
    def answer(self) -> int:
        value = self.operands[0]
        for op, operand in zip(self.ops, self.operands[1:], strict=True):
            value = value + operand if op == "+" else value - operand
        return value

    def solution_steps(self) -> list[str]:
        steps, value = [], self.operands[0]
        for op, operand in zip(self.ops, self.operands[1:], strict=True):
            new = value + operand if op == "+" else value - operand
            steps.append(f"{value}{op}{operand}={new}")
            value = new
        steps.append(f"{ANSWER_PREFIX}{value}")
        return steps

    def solution(self) -> str:
        return "".join(step + "\n" for step in self.solution_steps())


def sample_problem(rng: random.Random, level: int,
                   settings: dict[int, Setting] | None = None) -> Problem:
    (ops_lo, ops_hi), (dig_lo, dig_hi) = (LEVELS if settings is None else settings)[level]
    n_ops = rng.randint(ops_lo, ops_hi)
    operands = []
    for _ in range(n_ops + 1):
        digits = rng.randint(dig_lo, dig_hi)
        operands.append(rng.randint(0, 10**digits - 1))
    ops = tuple(rng.choice("+-") for _ in range(n_ops))
    return Problem(tuple(operands), ops, level)


def parse_question(text: str) -> Problem | None:
    """Parse ``question: 3+4`` (or a bare ``3+4``) into a Problem; None when it is not one."""
    body = text.strip()
    if body.startswith("question:"):
        body = body[len("question:") :].strip()
    body = body.replace(" ", "")
    if not _QUESTION_RE.match(body):
        return None
    tokens = re.findall(r"[+-]|\d+", body)
    operands = tuple(int(t) for t in tokens[0::2])
    ops = tuple(tokens[1::2])
    return Problem(operands, ops, level=0)


# ---------------------------------------------------------------- prompt forms


def solve_prompt(problem: Problem) -> str:
    return f"question: {problem.expression}\n"


def revise_prompt(problem: Problem, attempts: Sequence[str],
                  layout: RevisionFormat = QUESTION_FIRST) -> str:
    """The solve prompt and the most recent (up to 4) earlier attempts, in ``layout``."""
    return layout.render(solve_prompt(problem),
                         [split_steps(a) for a in list(attempts)[-MAX_REVISION_CONTEXT:]])


def normalize_solution(text: str) -> str:
    """Non-empty lines of a generated solution, each ending in a newline."""
    return "".join(line + "\n" for line in split_steps(text))


def split_steps(text: str) -> list[str]:
    return [line.strip() for line in text.split("\n") if line.strip()]


def prm_input(prompt: str, steps: Sequence[str]) -> str:
    """The embedded PRM's view of a solution (``prm_text`` with its step tag)."""
    return prm_text(prompt, steps, STEP_TAG)


# ---------------------------------------------------------------- grading


def extract_answer(solution: str) -> int | None:
    """The integer after the last ``answer:`` line, or None when there is no parseable one."""
    for line in reversed(split_steps(solution)):
        if line.startswith(ANSWER_PREFIX.strip()):
            value = line[len(ANSWER_PREFIX.strip()) :].strip()
            try:
                return int(value)
            except ValueError:
                return None
    return None


@dataclass(frozen=True)
class Grade:
    answer: int | None
    correct: bool  # the final answer equals the true answer
    steps_valid: tuple[bool, ...]  # per step: its arithmetic is right and it follows from the previous one


def grade(problem: Problem, solution: str) -> Grade:
    steps = split_steps(solution)
    answer = extract_answer(solution)
    validity: list[bool] = []
    expected = problem.operands[0]
    all_ok = True
    for i, step in enumerate(steps):
        if step.startswith(ANSWER_PREFIX.strip()):
            ok = all_ok and answer == expected and i == len(problem.ops)
        else:
            match = STEP_RE.match(step)
            ok = False
            if match and i < len(problem.ops):
                lhs, op, rhs, result = int(match[1]), match[2], int(match[3]), int(match[4])
                arithmetic = result == (lhs + rhs if op == "+" else lhs - rhs)
                follows = lhs == expected and op == problem.ops[i] and rhs == problem.operands[i + 1]
                ok = all_ok and arithmetic and follows
                if ok:
                    expected = result
        all_ok = all_ok and ok
        validity.append(ok)
    return Grade(answer=answer, correct=answer == problem.answer, steps_valid=tuple(validity))


# ---------------------------------------------------------------- splits

SPLIT_SEEDS = {"dev": 1001, "test": 2002}
SPLIT_PER_LEVEL = {"dev": 120, "test": 120}


def held_out_split(name: str) -> list[Problem]:
    """The dev (calibration) or test split: seeded, per level, disjoint from each other."""
    if name not in SPLIT_SEEDS:
        raise ValueError(f"unknown split {name!r}; choose dev or test")
    taken = {p.expression for p in _raw_split("test", LEVELS)} if name == "dev" else set()
    return [p for p in _raw_split(name, LEVELS) if p.expression not in taken]


def _raw_split(name: str, settings: dict[int, Setting]) -> list[Problem]:
    rng = random.Random(SPLIT_SEEDS[name])
    problems: list[Problem] = []
    for level in settings:
        seen: set[str] = set()
        while len(seen) < SPLIT_PER_LEVEL[name]:
            problem = sample_problem(rng, level, settings)
            if problem.expression not in seen:
                seen.add(problem.expression)
                problems.append(problem)
    return problems


def training_problems(seed: int) -> Iterator[Problem]:
    """An endless stream of training problems (the training mix) that never repeats a question of
    the dev or test split, nor one of the splits as first drawn from the training mix."""
    held_out = {p.expression for split in SPLIT_SEEDS for settings in (LEVELS, TRAINING_MIX)
                for p in _raw_split(split, settings)}
    rng = random.Random(seed)
    levels = list(TRAINING_MIX)
    while True:
        problem = sample_problem(rng, rng.choice(levels), TRAINING_MIX)
        if problem.expression not in held_out:
            yield problem
