"""The embedded generator's recipe (solve, then revise), on CPU.

A Llama-architecture causal LM trained on solve examples, then sampled (through the real vLLM CPU
server) on training questions to build revise examples from its own mistakes (Snell et al. §6), then
trained further on a mix of solve and revise examples.
"""

from __future__ import annotations

import itertools
import json
import random
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import LlamaForCausalLM

from ttc_serve.models.embedded import task
from ttc_serve.training.examples import Example, build_revise_examples, copy_revise_example, solve_example
from ttc_serve.training.lm import (
    SIZES,
    MicroBatch,
    TrainReport,
    count_parameters,
    generator_config,
    save_checkpoint,
    seed_everything,
    train_lm,
    write_report,
)
from ttc_serve.training.rollouts import sample_solutions


@dataclass(frozen=True)
class GeneratorRecipe:
    size: str = "small"
    seed: int = 0
    solve_steps: int = 1500
    revise_steps: int = 500
    batch_size: int = 64
    lr: float = 2e-3
    revise_questions: int = 3000
    revise_samples: int = 6
    # Revise examples drawn per question, each from its own subset of that question's samples: more
    # distinct contexts for the same sampling cost.
    revise_contexts: int = 1
    # Share of revise examples whose context is the model's own attempts as drawn, right or wrong
    # (the rest follow the paper: wrong attempts only). See ``build_revise_examples``.
    on_policy_context: float = 0.5
    # Revise examples added to every solve-phase step, their contexts built from the question's own
    # correct solution and slipped copies of it (see ``copy_revise_example``): a reviser must first
    # learn to read its attempts, and copying is worth most to the loss while the model cannot yet
    # compute the answer. Off in the shipped recipe: what it did is in generator-small's card.
    early_revise: int = 0
    # The first solve-phase steps whose revise examples show the correct solution as their only
    # attempt: copying is then their whole loss, and only so did a copy circuit form (pure copy
    # examples from scratch: dev NLL with the solution as attempt 120 -> 18 nats between steps 150
    # and 250; with half the attempts slipped it never formed in 1,500 steps).
    copy_warmup: int = 0
    # How revise prompts show the attempts (``task.REVISION_LAYOUTS``); the checkpoint records it.
    revision_layout: str = "question_first"
    # The first revise-phase steps whose revise examples are pure copies (the correct solution as
    # the only attempt), and how many pure copies each later step keeps, so that the copy formed
    # there is not trained away by contexts whose attempts are wrong.
    revise_copy_warmup: int = 0
    revise_pure: int = 0
    # Revise examples per revise-phase step whose attempts are independent witnesses: each the
    # correct solution (odds ``witness_right``) or a slipped copy of it (``copy_revise_example``).
    revise_witnesses: int = 0
    witness_right: float = 0.6
    # Witness slips only in a result's leading digit, the one the model writes before the digits
    # whose carries decide it (an attempt shows those digits).
    witness_leading_slips: bool = False
    # The pure copies show the question with its digits hidden (``copy_revise_example``).
    revise_copy_occluded: bool = False
    # What a revise example's target is (``REVISE_TARGETS``, see ``build_revise_examples``).
    revise_target: str = "correct"
    # How much sharper than calibrated the revise form's next-token distribution is trained to be: its
    # loss sees the logits divided by this, so that sampled at temperature T a revision draws as the
    # calibrated model would at T / sharpness, nearer its most likely solution (1: calibrated). At 2
    # a revision copied its attempt more, slips included, and chains stayed flat (the card).
    revise_sharpness: float = 1.0
    # bf16 autocast for the matmuls (fp32 master weights): 2.4x faster per step on these AVX512-BF16
    # cores for the large model. Off for the small one, whose shipped weights were trained in fp32.
    bf16_autocast: bool = False
    threads: int = 2


SMOKE_GENERATOR = GeneratorRecipe(size="smoke", solve_steps=30, revise_steps=10, batch_size=16,
                                  revise_questions=20, revise_samples=2,
                                  revision_layout="attempts_first", revise_copy_warmup=3, revise_pure=2,
                                  revise_witnesses=2, revise_sharpness=2.0)
# The larger sibling: the same data stream and steps as the small one's solve phase, at a lower
# learning rate (wider model) and in bf16 autocast (~2.2 s a step on 2 cores instead of ~5.5 s).
LARGE_GENERATOR = GeneratorRecipe(size="large", revise_steps=0, lr=1e-3, bf16_autocast=True)
# The best candidate generator-small (docs/reviser.md): revise prompts with the attempts first (a
# revision starts from a fresh solution's own context), a pure-copy warm-up, then on-policy contexts,
# 4 pure copies a step. Its chains stay flat where the shipped one's fall.
SMALL_ATTEMPTS_FIRST = GeneratorRecipe(revision_layout="attempts_first", revise_copy_warmup=200,
                                       revise_pure=4, on_policy_context=1.0, revise_contexts=4,
                                       revise_steps=600)
# The shipped generator-small.
SMALL_QUESTION_FIRST = GeneratorRecipe()
GENERATOR_RECIPES = {"small": SMALL_QUESTION_FIRST, "small-attempts-first": SMALL_ATTEMPTS_FIRST,
                     "large": LARGE_GENERATOR, "smoke": SMOKE_GENERATOR}


def train_generator(recipe: GeneratorRecipe, out_dir: Path, with_revisions: bool = True) -> TrainReport:
    """Train a generator checkpoint into ``out_dir`` and write ``training.json`` beside it."""
    started = time.time()
    seed_everything(recipe.seed, recipe.threads)
    config = generator_config(SIZES[recipe.size])
    model = LlamaForCausalLM(config)  # type: ignore[no-untyped-call]
    report = TrainReport(parameters=count_parameters(model))
    rng = random.Random(recipe.seed)
    stream = task.training_problems(recipe.seed)
    layout = task.REVISION_LAYOUTS[recipe.revision_layout]

    # Its own streams, so that the solve examples are the same with or without it.
    copy_stream, copy_rng = task.training_problems(recipe.seed + 1), random.Random(recipe.seed + 1)

    def solve_batches() -> Iterator[list[MicroBatch]]:
        for step in itertools.count():
            batch = [MicroBatch([solve_example(next(stream)) for _ in range(recipe.batch_size)])]
            if recipe.early_revise:
                pure = step < recipe.copy_warmup
                batch.append(MicroBatch([copy_revise_example(next(copy_stream), copy_rng, pure, layout)
                                         for _ in range(recipe.early_revise)]))
            yield batch

    solve_dir = out_dir.parent / f".{out_dir.name}-solve-phase"
    if _same_recipe(solve_dir, recipe):  # resume after a failure in a later phase
        model = LlamaForCausalLM.from_pretrained(solve_dir, dtype=torch.float32)
        for _ in range(recipe.solve_steps * recipe.batch_size):  # the stream position phase 1 left
            next(stream)
        report.tokens = json.loads((solve_dir / "phase.json").read_text())["tokens"]
        report.phases["solve_s"] = json.loads((solve_dir / "phase.json").read_text())["seconds"]
    else:
        train_lm(model, solve_batches(), recipe.solve_steps, recipe.lr, "generator: solve", report,
                  recipe.bf16_autocast)
        report.phases["solve_s"] = time.time() - started
        # Kept on disk (fp32) so that a failure in a later phase does not cost the solve phase.
        save_checkpoint(model, config, solve_dir, dtype=torch.float32, revision=layout)
        (solve_dir / "phase.json").write_text(json.dumps({
            "recipe": asdict(recipe), "tokens": report.tokens, "seconds": report.phases["solve_s"]}))

    if with_revisions and recipe.revise_steps > 0:
        phase = time.time()
        revise_problems = [next(stream) for _ in range(recipe.revise_questions)]
        samples = sample_solutions(solve_dir, [task.solve_prompt(p) for p in revise_problems],
                                   recipe.revise_samples, seed=recipe.seed)
        revise = build_revise_examples(revise_problems, samples, rng, recipe.on_policy_context,
                                       recipe.revise_contexts, layout, recipe.revise_target)
        report.phases["revise_sampling_s"] = time.time() - phase

        # Its own streams again: a resumed run has not drawn the solve phase's.
        pure_stream, pure_rng = task.training_problems(recipe.seed + 2), random.Random(recipe.seed + 2)

        def revise_examples(step: int) -> list[Example]:
            half = recipe.batch_size // 2
            occluded = recipe.revise_copy_occluded
            if step < recipe.revise_copy_warmup:
                return [copy_revise_example(next(pure_stream), pure_rng, True, layout,
                                            occluded=occluded) for _ in range(half)]
            pure = min(recipe.revise_pure, half)
            witnesses = min(recipe.revise_witnesses, half - pure)
            return (rng.sample(revise, min(half - pure - witnesses, len(revise)))
                    + [copy_revise_example(next(pure_stream), pure_rng, True, layout,
                                           occluded=occluded) for _ in range(pure)]
                    + [copy_revise_example(next(pure_stream), pure_rng, False, layout,
                                           recipe.witness_right,
                                           leading_slips=recipe.witness_leading_slips)
                       for _ in range(witnesses)])

        def mixed_batches() -> Iterator[list[MicroBatch]]:
            for step in itertools.count():
                solve = [solve_example(next(stream))
                         for _ in range(recipe.batch_size - recipe.batch_size // 2)]
                yield [MicroBatch(revise_examples(step), recipe.revise_sharpness), MicroBatch(solve)]

        phase = time.time()
        train_lm(model, mixed_batches(), recipe.revise_steps, recipe.lr / 2, "generator: revise",
                  report, recipe.bf16_autocast)
        report.phases["revise_training_s"] = time.time() - phase

    report.seconds = sum(report.phases.values())
    save_checkpoint(model, config, out_dir, revision=layout)
    write_report(out_dir, {"recipe": asdict(recipe), "report": asdict(report)})
    # The solve phase stays on disk (gitignored): changing only the revise phase of the recipe then
    # re-trains just that phase, bit-identical to a full run.
    return report


_SOLVE_FIELDS = ("size", "seed", "solve_steps", "batch_size", "lr", "bf16_autocast", "threads",
                 "early_revise", "copy_warmup", "revision_layout")


def _same_recipe(solve_dir: Path, recipe: GeneratorRecipe) -> bool:
    """Whether the saved solve phase is the one this recipe would train."""
    phase = solve_dir / "phase.json"
    if not phase.exists():
        return False
    # a phase saved before a field existed was trained with that field's default
    saved = {**asdict(GeneratorRecipe()), **json.loads(phase.read_text())["recipe"]}
    return all(saved[k] == getattr(recipe, k) for k in _SOLVE_FIELDS)
