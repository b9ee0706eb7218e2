"""Training examples for the embedded generator: solve examples, and revise examples built from the
model's own samples (Snell et al. §6) or from copies of the correct solution. Each is a prompt (context
only) and the target the model is trained to write."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from ttc_serve.models.embedded import task
from ttc_serve.models.revision_format import RevisionFormat


@dataclass(frozen=True)
class Example:
    prompt: str
    target: str  # trained on; the prompt is context only


def solve_example(problem: task.Problem) -> Example:
    return Example(task.solve_prompt(problem), problem.solution())


def plurality_answer(attempts: Sequence[str]) -> int | None:
    """The answer most of ``attempts`` give, at least two of them (None on a tie)."""
    answers = Counter(a for a in map(task.extract_answer, attempts) if a is not None).most_common(2)
    if not answers or answers[0][1] < 2 or (len(answers) == 2 and answers[0][1] == answers[1][1]):
        return None
    return answers[0][0]


def plurality_right(problem: task.Problem, attempts: Sequence[str]) -> bool:
    return plurality_answer(attempts) == problem.answer


def plurality_target(problem: task.Problem, attempts: Sequence[str]) -> str | None:
    """The solution that gives the plurality answer of ``attempts``: the correct one where that answer
    is right, else the first attempt that gives it; None where there is no plurality."""
    answer = plurality_answer(attempts)
    if answer is None:
        return None
    if answer == problem.answer:
        return problem.solution()
    return next(task.normalize_solution(a) for a in attempts if task.extract_answer(a) == answer)


REVISE_TARGETS = ("correct", "correct_where_plurality_right", "plurality", "context_plurality")


def build_revise_examples(problems: Sequence[task.Problem], samples: Sequence[Sequence[str]],
                          rng: random.Random, on_policy_context: float, contexts: int = 1,
                          layout: RevisionFormat = task.QUESTION_FIRST,
                          target: str = "correct") -> list[Example]:
    """Revise examples from the model's own samples; by default the target is the correct solution.

    Snell et al. §6 put only wrong attempts in the context: k in 0..4 of them, the last one the
    closest to the correct solution by edit distance. Trained on that alone, our reviser learned that
    whatever is in its context is wrong and revised correct answers away (pass@1 fell from 0.52 to 0.03
    over four revisions at level 3). So a share ``on_policy_context`` of the examples instead holds
    1..4 of the model's attempts as they were drawn, right or wrong, which is what a revision chain
    shows it at inference: where the context holds a correct attempt the target keeps it. (We know
    every correct solution exactly, so questions the model never solved give examples too.)
    Each question gives ``contexts`` examples, each drawn afresh.

    Trained so, the reviser's best guess is the solve form's own (its attempts are draws from what it
    already believes) and chains stay flat. Other ``target``s:

    - ``correct_where_plurality_right``: only the questions whose samples' plurality answer is right;
    - ``plurality``: the solution of the samples' plurality answer, right or wrong (self-consistency
      distillation, Huang et al. 2022, "Large Language Models Can Self-Improve"): a target the
      attempts do say something about, so the reviser learns to follow their consensus, which is
      right more often than one sample is (majority@N above pass@1);
    - ``context_plurality``: where two or more of the attempts shown agree on the most common
      answer, that answer's solution (a majority vote in context); else the correct solution.
    """
    if target not in REVISE_TARGETS:
        raise ValueError(f"unknown revise target {target!r}")
    examples = []
    for problem, attempts in ((p, a) for p, a in zip(problems, samples, strict=True)
                              for _ in range(contexts)):
        if target == "correct_where_plurality_right" and not plurality_right(problem, attempts):
            continue
        goal = plurality_target(problem, attempts) if target == "plurality" else problem.solution()
        if goal is None:
            continue
        if rng.random() < on_policy_context and attempts:
            k = rng.randint(1, min(task.MAX_REVISION_CONTEXT, len(attempts)))
            chosen = [task.normalize_solution(a) for a in rng.sample(list(attempts), k)]
            if target == "context_plurality" and k > 1:
                goal = plurality_target(problem, chosen) or goal
        else:
            wrong = list(dict.fromkeys(task.normalize_solution(a) for a in attempts
                                       if not task.grade(problem, a).correct))
            k = rng.randint(0, min(task.MAX_REVISION_CONTEXT, len(wrong)))
            chosen = rng.sample(wrong, k)
            if chosen:
                closest = min(chosen, key=lambda a: edit_distance(a, problem.solution()))
                chosen.remove(closest)
                chosen.append(closest)
        examples.append(Example(task.revise_prompt(problem, chosen, layout), goal))
    return examples


def slipped_solution(problem: task.Problem, rng: random.Random, leading: bool = False) -> str:
    """The solution with one step's result off in one digit (``leading``: its first), the later steps
    carried on from it (as the model's own slips are)."""
    slip = rng.randrange(len(problem.ops))
    value, lines = problem.operands[0], []
    for i, (op, operand) in enumerate(zip(problem.ops, problem.operands[1:], strict=True)):
        new = value + operand if op == "+" else value - operand
        if i == slip:
            step = rng.choice((-1, 1)) * rng.randint(1, 9)  # drawn first: same stream as before
            digits = len(str(abs(new)))
            new += step * 10 ** (digits - 1 if leading else rng.randrange(digits))
        lines.append(f"{value}{op}{operand}={new}")
        value = new
    lines.append(f"{task.ANSWER_PREFIX}{value}")
    return "".join(line + "\n" for line in lines)


def copy_revise_example(problem: task.Problem, rng: random.Random, pure: bool = False,
                        layout: RevisionFormat = task.QUESTION_FIRST, right: float = 0.5,
                        occluded: bool = False, leading_slips: bool = False) -> Example:
    """1..4 attempts, each the correct solution (odds ``right``) or a slipped one; target: correct.
    ``pure``: the correct solution as the only attempt; ``occluded``: with the question's digits
    shown as ``?``, so that only the attempt tells the numbers (a model that can already solve the
    question has no reason to copy otherwise)."""
    if pure:
        solution = problem.solution()
        prompt = task.solve_prompt(problem)
        if occluded:
            prompt = "".join("?" if c.isdigit() else c for c in prompt)
        return Example(layout.render(prompt, [task.split_steps(solution)]), solution)
    attempts = [problem.solution() if rng.random() < right
                else slipped_solution(problem, rng, leading_slips)
                for _ in range(rng.randint(1, task.MAX_REVISION_CONTEXT))]
    return Example(task.revise_prompt(problem, attempts, layout), problem.solution())


def edit_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]
