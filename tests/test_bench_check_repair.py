"""The check-and-repair probe's pure parts: which steps are checked, where an attempt is cut, and
what the solve form goes on from."""

from bench.check_repair_probe import StepCheck, first_failures, repaired_prefix, step_checks


def test_every_arithmetic_step_is_checked_and_the_answer_line_is_not() -> None:
    steps = step_checks(["84-15=79\n79+30=109\nanswer: 109\n", "garbage\n"])
    assert steps == [StepCheck(0, 0, 84, "-", 15, 79), StepCheck(0, 1, 79, "+", 30, 109)]


def test_the_first_step_whose_check_disagrees_is_cut_and_fixed() -> None:
    steps = step_checks(["84-15=79\n79+30=109\nanswer: 109\n", "1+2=3\nanswer: 3\n"])
    # the checks say (least significant digit first) 96 for 84-15, 901 for 79+30, 3 for 1+2
    failures = first_failures(steps, ["96\n", "901", "3"])
    assert failures == {0: (0, "84-15=69")}  # the second chain's step checks out, so it is kept
    assert repaired_prefix("84-15=79\n79+30=109\nanswer: 109\n", *failures[0]) == "84-15=69\n"


def test_a_check_that_states_no_number_flags_nothing() -> None:
    steps = step_checks(["84-15=69\n69+30=98\nanswer: 98\n"])
    assert first_failures(steps, ["?", "89"]) == {}  # 98, as written


def test_a_later_failure_keeps_the_checked_steps_before_it() -> None:
    attempt = "84-15=69\n69+30=98\nanswer: 98\n"
    failures = first_failures(step_checks([attempt]), ["96", "99"])
    assert failures == {0: (1, "69+30=99")}
    assert repaired_prefix(attempt, *failures[0]) == "84-15=69\n69+30=99\n"
