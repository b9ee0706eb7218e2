"""The check-and-repair probe's tally of a chain's first checks against the true step values."""

from bench.check_repair_probe import CheckTally
from bench.revision_chains import QuestionChains, pass_at_1_by_attempt
from models.check_format import CheckFormat
from models.embedded import task


def test_the_tally_counts_exact_checks_caught_slips_and_flagged_valid_steps() -> None:
    problem = task.held_out_split("dev")[0]
    first = "84-15=79\n79+30=109\nanswer: 109\n"  # 84-15 slipped (69), 79+30 is right
    chains = QuestionChains(problem, [[first, "84-15=69\n69+30=99\nanswer: 99\n"], [first, first]],
                            checks={"84-15": 69, "79+30": 108})  # right, then wrong on a valid step
    tally = CheckTally()
    tally.add(chains, CheckFormat())
    assert (tally.checks, tally.exact, tally.slips, tally.slips_caught) == (4, 2, 2, 2)
    assert (tally.valid, tally.valid_flagged) == (2, 2)
    assert tally.rates()["attempts_changed"] == 0.5


def test_pass_at_1_by_attempt_grades_each_position_of_each_chain() -> None:
    problem = task.held_out_split("dev")[0]
    right = "".join(s + "\n" for s in problem.solution_steps())
    chains = QuestionChains(problem, [["answer: 0\n", right], [right, right]])
    assert pass_at_1_by_attempt([chains]) == {problem.level: [0.5, 1.0]}
