"""Revision chains as eval-models grades them."""

from bench.revision_chains import QuestionChains, pass_at_1_by_attempt
from ttc_serve.models.embedded import task


def test_pass_at_1_by_attempt_grades_each_position_of_each_chain() -> None:
    problem = task.held_out_split("dev")[0]
    right = "".join(s + "\n" for s in problem.solution_steps())
    chains = QuestionChains(problem, [["answer: 0\n", right], [right, right]])
    assert pass_at_1_by_attempt([chains]) == {problem.level: [0.5, 1.0]}
