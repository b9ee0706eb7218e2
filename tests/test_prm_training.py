"""The PRM recipe's parts: labels, near misses, batches and losses, the body it starts from."""

from __future__ import annotations

import re
from pathlib import Path

from models.embedded import prm_training, task, training


def test_prm_body_starts_as_the_generator_body(tmp_path: Path) -> None:
    import torch
    from transformers import LlamaForCausalLM

    generator_dir = tmp_path / "generator"
    training.train_generator(training.SMOKE_GENERATOR, generator_dir, with_revisions=False)
    generator = LlamaForCausalLM.from_pretrained(generator_dir, dtype=torch.float32)
    ids = torch.tensor([[1, 20, 30, 40, 50, 60]])
    mask = torch.ones_like(ids)
    expected = generator.model(input_ids=ids, attention_mask=mask).last_hidden_state
    for extra_layers in (0, 2):  # fresh layers on top start as the identity
        prm, config = prm_training.prm_from_generator(generator_dir, extra_layers)
        assert config.num_hidden_layers == generator.config.num_hidden_layers + extra_layers
        actual = prm.model(input_ids=ids, attention_mask=mask).last_hidden_state
        torch.testing.assert_close(actual, expected)


def test_soft_labels_follow_math_shepherd() -> None:
    problem = task.Problem((10, 5, 3), ("+", "-"), level=2)
    samples = [["10+5=15\n15-3=12\nanswer: 12\n", "10+5=14\n14-3=11\nanswer: 11\n"]]
    asked: list[str] = []

    def rollout(prefixes: list[str]) -> list[float]:
        asked.extend(prefixes)
        return [0.25 * (i + 1) for i in range(len(prefixes))]

    right, wrong = prm_training.prm_labels([problem], samples, rollout)
    assert asked == ["question: 10+5-3\n10+5=15\n", "question: 10+5-3\n10+5=15\n15-3=12\n"]
    assert right.labels == (0.25, 0.5, 1.0)  # rollout values, then the exact final verdict
    assert wrong.labels == (0.0, 0.0, 0.0)  # after an invalid step: the checker's 0


def test_near_misses_slip_one_digit_and_carry_it_on() -> None:
    import random

    rng = random.Random(0)
    for i in range(500):
        problem = task.sample_problem(rng, 1 + i % 5)
        miss = prm_training.near_miss(problem, rng)
        grade = task.grade(problem, miss)
        assert not grade.correct and len(task.split_steps(miss)) == len(problem.ops) + 1
        first = grade.steps_valid.index(False)
        assert all(grade.steps_valid[:first]) and not any(grade.steps_valid[first:])
        assert task.split_steps(miss)[:first] == task.split_steps(problem.solution())[:first]
        # every later step is right arithmetic on the slipped running value
        assert all(_arithmetic_holds(step) for step in task.split_steps(miss)[first + 1:-1])


def _arithmetic_holds(step: str) -> bool:
    lhs, op, rhs, result = re.fullmatch(r"(-?\d+)([+-])(\d+)=(-?\d+)", step).groups()  # type: ignore[union-attr]
    return int(result) == (int(lhs) + int(rhs) if op == "+" else int(lhs) - int(rhs))


def test_prm_batches_hold_whole_questions_and_the_ranking_loss_orders_them() -> None:
    import random
    from dataclasses import replace

    import torch

    def example(q: int, last: float) -> prm_training.PrmExample:
        return prm_training.PrmExample(f"question: {q}+1\n", ("a", "answer: 1"), (0.5, last))

    examples = [example(q, float(i % 2)) for q in range(6) for i in range(4)]
    recipe = replace(prm_training.PrmRecipe(), batch_size=8, questions_per_batch=2)
    batch = next(prm_training._question_batches(examples, recipe, random.Random(0)))
    assert len(batch) == 8 and len({ex.prompt for ex in batch}) == 2
    _, _, targets = prm_training.encode_prm(batch)
    logits = torch.zeros(len(batch), targets.shape[1], 2)
    good_high, good_low = logits.clone(), logits.clone()
    for i, ex in enumerate(batch):
        last = int((~torch.isnan(targets[i])).nonzero().max())
        sign = 1.0 if ex.labels[-1] == 1.0 else -1.0
        good_high[i, last, 1], good_low[i, last, 1] = 3 * sign, -3 * sign
    assert prm_training._ranking_loss(good_high, targets, batch) < 0.01
    assert prm_training._ranking_loss(good_low, targets, batch) > 5.0


def test_the_verification_stream_holds_exactly_labelled_right_and_slipped_solutions() -> None:
    import random

    problem = task.Problem((10, 5, 3), ("+", "-"), level=2)
    own = [prm_training.PrmExample(task.solve_prompt(problem), ("10+5=15", "15-3=11", "answer: 11"),
                                   (0.5, 0.0, 0.0))]  # soft labels from rollouts, relabelled exactly
    stream = prm_training.verification_examples(own, own_share=0.25, seed=3, rng=random.Random(0))
    drawn = [next(stream) for _ in range(400)]
    relabelled = [ex for ex in drawn if ex.steps == own[0].steps]
    assert relabelled and all(ex.labels == (1.0, 0.0, 0.0) for ex in relabelled)
    fresh = [ex for ex in drawn if ex.steps != own[0].steps]
    assert abs(len(relabelled) / len(drawn) - 0.25) < 0.08
    right = [ex for ex in fresh if all(ex.labels)]
    assert 0.4 < len(right) / len(fresh) < 0.6  # the rest are near misses, wrong from their slip on
    for ex in fresh:
        fresh_problem = task.parse_question(ex.prompt)
        assert fresh_problem is not None
        expected = task.grade(fresh_problem, "\n".join(ex.steps)).steps_valid
        assert ex.labels == tuple(float(v) for v in expected)
