"""Revise and copy examples: what the generator recipe trains its reviser on."""

from __future__ import annotations

from ttc_serve.models.embedded import task
from ttc_serve.training.examples import (
    build_revise_examples,
    copy_revise_example,
    plurality_answer,
    plurality_right,
    slipped_solution,
)


def test_revise_examples_put_the_closest_wrong_attempt_last() -> None:
    import random

    problem = task.Problem((10, 5), ("+",), level=1)
    samples = [["10+5=15\nanswer: 15\n", "10+5=99\nanswer: 99\n", "10+5=16\nanswer: 16\n"]]
    for seed in range(20):
        (example,) = build_revise_examples([problem], samples, random.Random(seed),
                                                    on_policy_context=0.0)
        assert example.target == problem.solution()
        attempts = example.prompt.count("attempt:")
        assert attempts <= 2 and "answer: 15" not in example.prompt  # correct samples are not attempts
        if attempts == 2:
            assert example.prompt.rindex("answer: 16") > example.prompt.rindex("answer: 99")


def test_on_policy_revise_contexts_can_hold_a_correct_attempt_that_the_target_keeps() -> None:
    import random

    problem = task.Problem((10, 5), ("+",), level=1)
    samples = [["10+5=15\nanswer: 15\n", "10+5=99\nanswer: 99\n"]]
    examples = [build_revise_examples([problem], samples, random.Random(seed),
                                               on_policy_context=1.0)[0] for seed in range(30)]
    assert all(1 <= ex.prompt.count("attempt:") <= 2 for ex in examples)
    kept = [ex for ex in examples if "answer: 15" in ex.prompt]
    assert kept and all(ex.target == problem.solution() for ex in kept)


def test_several_revise_contexts_per_question_are_drawn_afresh() -> None:
    import random

    problem = task.Problem((10, 5), ("+",), level=1)
    samples = [[f"10+5={v}\nanswer: {v}\n" for v in (15, 99, 16, 14, 13, 12)]]
    one = build_revise_examples([problem], samples, random.Random(3), on_policy_context=1.0)
    many = build_revise_examples([problem], samples, random.Random(3), on_policy_context=1.0,
                                          contexts=8)
    assert len(one) == 1 and len(many) == 8 and many[0] == one[0]  # one context: the shipped recipe
    assert len({ex.prompt for ex in many}) > 1 and all(ex.target == problem.solution() for ex in many)


def test_majority_right_filter_keeps_only_questions_whose_plurality_answer_is_right() -> None:
    import random

    right, wrong = task.Problem((10, 5), ("+",), level=1), task.Problem((20, 5), ("+",), level=1)
    samples = [["10+5=15\nanswer: 15\n", "10+5=15\nanswer: 15\n", "10+5=16\nanswer: 16\n"],
               ["20+5=26\nanswer: 26\n", "20+5=26\nanswer: 26\n", "20+5=25\nanswer: 25\n"]]
    kept = build_revise_examples([right, wrong], samples, random.Random(0), on_policy_context=1.0,
                                          contexts=3, target="correct_where_plurality_right")
    assert len(kept) == 3 and all(ex.target == right.solution() for ex in kept)
    everything = build_revise_examples([right, wrong], samples, random.Random(0),
                                                on_policy_context=1.0, contexts=3)
    assert len(everything) == 6
    # a tie for the plurality keeps nothing; unparsable samples do not vote
    assert not plurality_right(right, ["answer: 15\n", "answer: 16\n", "no answer"])
    assert plurality_right(right, ["answer: 15\n", "answer: 15\n", "answer: 16\n", "junk"])


def test_plurality_targets_follow_the_samples_consensus_right_or_wrong() -> None:
    import random

    right, wrong = task.Problem((10, 5), ("+",), level=1), task.Problem((20, 5), ("+",), level=1)
    samples = [["10+5=15\nanswer: 15\n", "10+5=15\nanswer: 15\n", "10+5=16\nanswer: 16\n"],
               ["20+5=26\nanswer: 26\n", "20+5=26\nanswer: 26\n", "20+5=25\nanswer: 25\n"],
               ["20+5=24\nanswer: 24\n", "20+5=25\nanswer: 25\n"]]  # a tie: no example
    examples = build_revise_examples([right, wrong, wrong], samples, random.Random(0),
                                              on_policy_context=1.0, target="plurality")
    assert [ex.target for ex in examples] == [right.solution(), "20+5=26\nanswer: 26\n"]
    assert plurality_answer(["answer: 24\n", "junk"]) is None  # one vote is no consensus


def test_context_plurality_targets_copy_an_agreeing_context_else_the_correct_solution() -> None:
    import random

    problem = task.Problem((20, 5), ("+",), level=1)
    samples = [["20+5=26\nanswer: 26\n"] * 2 + ["20+5=24\nanswer: 24\n"]]
    examples = build_revise_examples([problem], samples, random.Random(0), on_policy_context=1.0,
                                              contexts=40, target="context_plurality")
    for ex in examples:
        agreeing = ex.prompt.count("answer: 26") >= 2
        assert ex.target == ("20+5=26\nanswer: 26\n" if agreeing else problem.solution())
    assert {ex.target for ex in examples} == {"20+5=26\nanswer: 26\n", problem.solution()}


def test_slipped_solution_has_one_wrong_step_and_carries_on_from_it() -> None:
    import random
    import re

    stream, rng = task.training_problems(5), random.Random(5)
    for _ in range(200):
        problem = next(stream)
        steps = task.split_steps(slipped_solution(problem, rng))
        parsed = [re.fullmatch(r"(-?\d+)([+-])(\d+)=(-?\d+)", s) for s in steps[:-1]]
        assert all(parsed) and len(parsed) == len(problem.ops)
        wrong = [m for m in parsed if m and int(m[4]) != int(m[1]) + (1 if m[2] == "+" else -1) * int(m[3])]
        assert len(wrong) == 1  # one slip; every later step is right arithmetic on the slipped value
        lhs = [int(m[1]) for m in parsed if m]
        results = [int(m[4]) for m in parsed if m]
        assert lhs[1:] == results[:-1] and lhs[0] == problem.operands[0]
        assert task.extract_answer(steps[-1]) == results[-1] != problem.answer


def test_copy_revise_examples_hold_correct_and_slipped_attempts_and_target_the_solution() -> None:
    import random

    stream, rng = task.training_problems(6), random.Random(6)
    examples = [copy_revise_example(next(stream), rng) for _ in range(100)]
    counts = [ex.prompt.count("attempt:") for ex in examples]
    assert min(counts) == 1 and max(counts) == task.MAX_REVISION_CONTEXT
    graded = [task.parse_question(ex.prompt.split("\n")[0]) for ex in examples]
    assert all(p is not None and ex.target == p.solution() for p, ex in zip(graded, examples, strict=True))
    holds_target = sum(ex.target in ex.prompt for ex in examples)
    assert 30 < holds_target < 100  # some contexts show the answer to copy, some only slips


def test_pure_copy_examples_show_the_solution_as_their_only_attempt() -> None:
    import random

    stream, rng = task.training_problems(7), random.Random(7)
    for _ in range(20):
        problem = next(stream)
        for layout in task.REVISION_LAYOUTS.values():
            example = copy_revise_example(problem, rng, pure=True, layout=layout)
            assert example.prompt == task.revise_prompt(problem, [problem.solution()], layout)
            assert example.target == problem.solution()


def test_occluded_copy_examples_hide_the_question_digits_and_nothing_else() -> None:
    import random

    stream, rng = task.training_problems(7), random.Random(7)
    for _ in range(20):
        problem = next(stream)
        plain = copy_revise_example(problem, rng, pure=True, layout=task.ATTEMPTS_FIRST)
        hidden = copy_revise_example(problem, rng, pure=True, layout=task.ATTEMPTS_FIRST,
                                              occluded=True)
        question = task.solve_prompt(problem)
        assert hidden.target == plain.target == problem.solution()
        assert hidden.prompt.endswith("".join("?" if c.isdigit() else c for c in question))
        assert hidden.prompt[:-len(question)] == plain.prompt[:-len(question)]  # the attempt as is


def test_leading_slips_change_only_the_first_digit_of_the_slipped_result() -> None:
    import random
    import re

    stream, rng = task.training_problems(6), random.Random(6)
    for _ in range(200):
        problem = next(stream)
        right = task.split_steps(problem.solution())
        slipped = task.split_steps(slipped_solution(problem, rng, leading=True))
        first = next(i for i, (a, b) in enumerate(zip(right, slipped, strict=True)) if a != b)
        true_value = int(re.split("=", right[first])[1])
        slipped_value = int(re.split("=", slipped[first])[1])
        place = 10 ** (len(str(abs(true_value))) - 1)
        assert slipped_value != true_value and (slipped_value - true_value) % place == 0
