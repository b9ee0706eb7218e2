"""The check form: a step's result least significant digit first, parsed back exactly."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from ttc_serve.models.embedded import task
from ttc_serve.training import checker


@given(st.integers(min_value=-10**7, max_value=10**7))
def test_a_check_target_parses_back_to_its_value(value: int) -> None:
    assert checker.parse_check(checker.check_target(value) + "\n") == value


def test_check_target_writes_the_units_first_and_the_sign_first() -> None:
    assert checker.check_target(152) == "251"
    assert checker.check_target(-229) == "-922"
    assert checker.check_target(0) == "0"
    assert checker.check_prompt(114, "+", 38) == "check 114+38="


def test_parse_check_states_nothing_for_what_is_not_a_number() -> None:
    for text in ("", "-", "12a", "ok", "1 2"):
        assert checker.parse_check(text) is None


def test_a_drill_checks_a_step_of_the_correct_solution() -> None:
    rng = random.Random(0)
    for problem in task.held_out_split("dev")[:50]:
        drill = checker.check_drill(problem, rng)
        expression = drill.prompt.removeprefix("check ").removesuffix("=")
        steps = [s.split("=")[0] for s in problem.solution_steps()[:-1]]
        assert expression in steps
        value = checker.parse_check(drill.target)
        assert value is not None and f"{expression}={value}" in problem.solution_steps()
