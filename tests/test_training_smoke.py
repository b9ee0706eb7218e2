"""The training recipes, tiny: so the recipe that built the shipped checkpoints cannot rot."""

from __future__ import annotations

import json
import re
from pathlib import Path

from models.cost import FlopsModel
from models.embedded import task, training


def test_smoke_recipes_train_and_ship_loadable_checkpoints(tmp_path: Path) -> None:
    generator_dir, prm_dir = tmp_path / "generator", tmp_path / "prm"
    report = training.train_generator(training.SMOKE_GENERATOR, generator_dir)
    assert report.parameters > 0 and report.tokens > 0 and "revise_training_s" in report.phases
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "training.json"):
        assert (generator_dir / name).exists(), name
    assert json.loads((generator_dir / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]

    _prm_body_starts_as_the_generator_body(generator_dir)
    prm_report = training.train_prm(training.SMOKE_PRM, generator_dir, prm_dir)
    config = json.loads((prm_dir / "config.json").read_text())
    assert config["architectures"] == ["Qwen2ForProcessRewardModel"] and len(config["id2label"]) == 2
    assert prm_report.final_loss == prm_report.final_loss  # not NaN
    assert FlopsModel.from_model_dir(prm_dir).matmul_params > 0


def _prm_body_starts_as_the_generator_body(generator_dir: Path) -> None:
    import torch
    from transformers import LlamaForCausalLM

    generator = LlamaForCausalLM.from_pretrained(generator_dir, dtype=torch.float32)
    ids = torch.tensor([[1, 20, 30, 40, 50, 60]])
    mask = torch.ones_like(ids)
    expected = generator.model(input_ids=ids, attention_mask=mask).last_hidden_state
    for extra_layers in (0, 2):  # fresh layers on top start as the identity
        prm, config = training.prm_from_generator(generator_dir, extra_layers)
        assert config.num_hidden_layers == generator.config.num_hidden_layers + extra_layers
        actual = prm.model(input_ids=ids, attention_mask=mask).last_hidden_state
        torch.testing.assert_close(actual, expected)


def test_revise_examples_put_the_closest_wrong_attempt_last() -> None:
    import random

    problem = task.Problem((10, 5), ("+",), level=1)
    samples = [["10+5=15\nanswer: 15\n", "10+5=99\nanswer: 99\n", "10+5=16\nanswer: 16\n"]]
    for seed in range(20):
        (example,) = training.build_revise_examples([problem], samples, random.Random(seed),
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
    examples = [training.build_revise_examples([problem], samples, random.Random(seed),
                                               on_policy_context=1.0)[0] for seed in range(30)]
    assert all(1 <= ex.prompt.count("attempt:") <= 2 for ex in examples)
    kept = [ex for ex in examples if "answer: 15" in ex.prompt]
    assert kept and all(ex.target == problem.solution() for ex in kept)


def test_several_revise_contexts_per_question_are_drawn_afresh() -> None:
    import random

    problem = task.Problem((10, 5), ("+",), level=1)
    samples = [[f"10+5={v}\nanswer: {v}\n" for v in (15, 99, 16, 14, 13, 12)]]
    one = training.build_revise_examples([problem], samples, random.Random(3), on_policy_context=1.0)
    many = training.build_revise_examples([problem], samples, random.Random(3), on_policy_context=1.0,
                                          contexts=8)
    assert len(one) == 1 and len(many) == 8 and many[0] == one[0]  # one context: the shipped recipe
    assert len({ex.prompt for ex in many}) > 1 and all(ex.target == problem.solution() for ex in many)


def test_soft_labels_follow_math_shepherd() -> None:
    problem = task.Problem((10, 5, 3), ("+", "-"), level=2)
    samples = [["10+5=15\n15-3=12\nanswer: 12\n", "10+5=14\n14-3=11\nanswer: 11\n"]]
    asked: list[str] = []

    def rollout(prefixes: list[str]) -> list[float]:
        asked.extend(prefixes)
        return [0.25 * (i + 1) for i in range(len(prefixes))]

    right, wrong = training.prm_labels([problem], samples, rollout)
    assert asked == ["question: 10+5-3\n10+5=15\n", "question: 10+5-3\n10+5=15\n15-3=12\n"]
    assert right.labels == (0.25, 0.5, 1.0)  # rollout values, then the exact final verdict
    assert wrong.labels == (0.0, 0.0, 0.0)  # after an invalid step: the checker's 0


def test_generator_recipe_is_bit_reproducible_from_its_seed(tmp_path: Path) -> None:
    """Same seed, same weights (the solve phase; the revise phase adds seeded vLLM sampling)."""
    from dataclasses import replace

    recipe = replace(training.SMOKE_GENERATOR, solve_steps=15)
    a, b = tmp_path / "a", tmp_path / "b"
    training.train_generator(recipe, a, with_revisions=False)
    training.train_generator(recipe, b, with_revisions=False)
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    training.train_generator(replace(recipe, seed=1), b, with_revisions=False)
    assert (a / "model.safetensors").read_bytes() != (b / "model.safetensors").read_bytes()


def test_near_misses_slip_one_digit_and_carry_it_on() -> None:
    import random

    rng = random.Random(0)
    for i in range(500):
        problem = task.sample_problem(rng, 1 + i % 5)
        miss = training.near_miss(problem, rng)
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

    def example(q: int, last: float) -> training.PrmExample:
        return training.PrmExample(f"question: {q}+1\n", ("a", "answer: 1"), (0.5, last))

    examples = [example(q, float(i % 2)) for q in range(6) for i in range(4)]
    recipe = replace(training.PrmRecipe(), batch_size=8, questions_per_batch=2)
    batch = next(training._question_batches(examples, recipe, random.Random(0)))
    assert len(batch) == 8 and len({ex.prompt for ex in batch}) == 2
    _, _, targets = training.encode_prm(batch)
    logits = torch.zeros(len(batch), targets.shape[1], 2)
    good_high, good_low = logits.clone(), logits.clone()
    for i, ex in enumerate(batch):
        last = int((~torch.isnan(targets[i])).nonzero().max())
        sign = 1.0 if ex.labels[-1] == 1.0 else -1.0
        good_high[i, last, 1], good_low[i, last, 1] = 3 * sign, -3 * sign
    assert training._ranking_loss(good_high, targets, batch) < 0.01
    assert training._ranking_loss(good_low, targets, batch) > 5.0
