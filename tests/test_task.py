"""The embedded task: exact grading, prompt forms and split hygiene."""

from __future__ import annotations

import itertools
import random

from hypothesis import given
from hypothesis import strategies as st

from ttc_serve.models.embedded import task


@given(seed=st.integers(0, 10**6), level=st.sampled_from(sorted(task.LEVELS)))
def test_canonical_solutions_grade_correct(seed: int, level: int) -> None:
    problem = task.sample_problem(random.Random(seed), level)
    grade = task.grade(problem, problem.solution())
    assert grade.correct and all(grade.steps_valid)
    assert len(grade.steps_valid) == len(problem.ops) + 1
    assert task.parse_question(task.solve_prompt(problem)) == task.Problem(problem.operands, problem.ops, 0)


def test_grader_finds_the_first_wrong_step_and_what_follows() -> None:
    problem = task.Problem((37, 5, 12), ("+", "-"), level=2)
    wrong = "37+5=41\n41-12=29\nanswer: 29\n"  # arithmetic slip in step 1, consistent afterwards
    grade = task.grade(problem, wrong)
    assert grade.answer == 29 and not grade.correct
    assert grade.steps_valid == (False, False, False)
    skipped = "37+5=42\nanswer: 42\n"  # stops early: the answer step is invalid
    assert task.grade(problem, skipped).steps_valid == (True, False)
    assert task.extract_answer("garbage") is None


def test_splits_are_seeded_and_disjoint() -> None:
    dev, test = task.held_out_split("dev"), task.held_out_split("test")
    assert dev == task.held_out_split("dev")
    dev_q, test_q = {p.expression for p in dev}, {p.expression for p in test}
    assert not dev_q & test_q
    assert {p.level for p in test} == set(task.LEVELS)
    train = {p.expression for p in itertools.islice(task.training_problems(0), 20000)}
    assert not train & (dev_q | test_q)


def test_revise_prompt_keeps_the_last_four_attempts() -> None:
    problem = task.Problem((1, 2), ("+",), level=1)
    attempts = [f"1+2={i}\nanswer: {i}\n" for i in range(6)]
    prompt = task.revise_prompt(problem, attempts)
    assert prompt.startswith("question: 1+2\n") and prompt.endswith("revision:\n")
    assert prompt.count("attempt:\n") == 4 and "answer: 0" not in prompt and "answer: 5" in prompt
