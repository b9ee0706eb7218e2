"""The training recipes, tiny: so the recipe that built the shipped checkpoints cannot rot."""

from __future__ import annotations

import json
from pathlib import Path

from ttc_serve.models.check_format import CheckFormat
from ttc_serve.models.cost import FlopsModel
from ttc_serve.models.embedded import task
from ttc_serve.models.revision_format import RevisionFormat
from ttc_serve.training import checker, generator, lm, prm


def test_smoke_recipes_train_and_ship_loadable_checkpoints(tmp_path: Path) -> None:
    generator_dir, prm_dir = tmp_path / "generator", tmp_path / "prm"
    report = generator.train_generator(generator.SMOKE_GENERATOR, generator_dir)
    assert report.parameters > 0 and report.tokens > 0 and "revise_training_s" in report.phases
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "training.json"):
        assert (generator_dir / name).exists(), name
    assert json.loads((generator_dir / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    # the checkpoint names the revise layout it was trained on, for the service to use
    assert RevisionFormat.from_model_dir(generator_dir) == task.ATTEMPTS_FIRST

    prm_report = prm.train_prm(prm.SMOKE_PRM, generator_dir, generator_dir, prm_dir)
    config = json.loads((prm_dir / "config.json").read_text())
    assert config["architectures"] == ["Qwen2ForProcessRewardModel"] and len(config["id2label"]) == 2
    assert prm_report.final_loss == prm_report.final_loss  # not NaN
    assert {"labelling_s", "features_s", "head_fit_s"} <= set(prm_report.phases)
    assert FlopsModel.from_model_dir(prm_dir).matmul_params > 0


def test_generator_recipe_is_bit_reproducible_from_its_seed(tmp_path: Path) -> None:
    """Same seed, same weights (the solve phase, with its early revise examples both pure and
    slipped; the revise phase adds seeded vLLM sampling)."""
    from dataclasses import replace

    recipe = replace(generator.SMOKE_GENERATOR, solve_steps=15, early_revise=4, copy_warmup=8)
    a, b = tmp_path / "a", tmp_path / "b"
    generator.train_generator(recipe, a, with_revisions=False)
    generator.train_generator(recipe, b, with_revisions=False)
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    generator.train_generator(replace(recipe, seed=1), b, with_revisions=False)
    assert (a / "model.safetensors").read_bytes() != (b / "model.safetensors").read_bytes()


def test_sharpened_loss_is_the_cross_entropy_of_the_logits_divided_by_the_sharpness() -> None:
    """The revise form's loss (``revise_sharpness``): plain cross-entropy at 1, the logits divided
    by the sharpness above it, prompt tokens never trained."""
    import torch
    from transformers import LlamaForCausalLM

    from ttc_serve.training.examples import solve_example

    torch.manual_seed(0)
    model = LlamaForCausalLM(lm.generator_config(lm.SIZES["smoke"]))
    examples = [solve_example(p) for p in task.held_out_split("dev")[:3]]
    input_ids, attention, labels = lm.encode(examples)
    with torch.no_grad():
        logits = model(input_ids=input_ids, attention_mask=attention).logits[:, :-1].float()
        plain, tokens = lm.lm_loss(model, lm.MicroBatch(examples))
        sharp, _ = lm.lm_loss(model, lm.MicroBatch(examples, sharpness=2.0))
    trained = labels[:, 1:] != -100
    logp = torch.log_softmax(logits / 2.0, -1)
    expected = -torch.gather(logp, 2, labels[:, 1:].clamp(min=0).unsqueeze(-1)).squeeze(-1)[trained]
    assert tokens == int(attention.sum())
    assert torch.isclose(sharp, expected.mean(), atol=1e-5)
    assert not torch.isclose(plain, sharp, atol=1e-3)


def test_check_stage_teaches_the_check_form_and_keeps_the_checkpoint_loadable(tmp_path: Path) -> None:
    """The check stage, tiny, from a smoke generator: it must ship a
    checkpoint of the same architecture and revise layout, changed by the drills."""
    from dataclasses import replace


    generator_dir, checker_dir = tmp_path / "generator", tmp_path / "checker"
    generator.train_generator(replace(generator.SMOKE_GENERATOR, solve_steps=10), generator_dir,
                             with_revisions=False)
    report = checker.train_checker(checker.SMOKE_CHECK, generator_dir, checker_dir)
    assert report.tokens > 0 and report.final_loss == report.final_loss  # not NaN
    record = json.loads((checker_dir / "training.json").read_text())
    assert record["stage"] == "check" and record["recipe"]["steps"] == checker.SMOKE_CHECK.steps
    # the whole training, both stages: what the card and the pre-training compute read
    before = json.loads((generator_dir / "training.json").read_text())["report"]
    assert record["report"]["tokens"] == before["tokens"] + report.tokens
    assert set(record["report"]["phases"]) == {*before["phases"], "check_s"}
    assert CheckFormat.from_model_dir(checker_dir) == checker.CHECK_FORM  # the service finds it
    config = json.loads((checker_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["torch_dtype"] == "float32"
    assert RevisionFormat.from_model_dir(checker_dir) == RevisionFormat.from_model_dir(generator_dir)
    weights = "model.safetensors"
    assert (checker_dir / weights).read_bytes() != (generator_dir / weights).read_bytes()
