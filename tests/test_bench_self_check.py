"""The self-check probe's pure parts: classifying a solution's first error, and the check question."""

from bench.self_check_probe import check_prompt, first_error, forward_prompt
from models.embedded import task


def _problem() -> task.Problem:
    return task.Problem(operands=(84, 15, 30), ops=("-", "+"), level=2)


def test_correct_solution_has_no_error() -> None:
    assert first_error(_problem(), _problem().solution()) is None


def test_carry_slip_names_the_digit_and_distance() -> None:
    assert first_error(_problem(), "84-15=79\n79+30=109\nanswer: 109\n") == "result:1:1"


def test_lookup_and_copy_errors() -> None:
    assert first_error(_problem(), "84-16=68\n68+30=98\nanswer: 98\n") == "operand"
    assert first_error(_problem(), "84-15=69\n68+30=98\nanswer: 98\n") == "lhs"
    assert first_error(_problem(), "84+15=99\n99+30=129\nanswer: 129\n") == "operator"
    assert first_error(_problem(), "84-15=69\nanswer: 69\n") == "steps"
    assert first_error(_problem(), "84-15=690\n690+30=720\nanswer: 720\n") == "result:length"


def test_check_prompt_inverts_the_step() -> None:
    assert check_prompt("-", 15, 69) == "question: 69+15+0+0+0\n"
    assert check_prompt("+", 30, 99) == "question: 99-30+0+0+0\n"
    assert task.parse_question(check_prompt("-", 15, 69)) is not None


def test_forward_prompt_poses_the_step_as_a_first_step() -> None:
    posed = task.parse_question(forward_prompt(84, "-", 15))
    assert posed is not None and posed.solution_steps()[0] == "84-15=69"
