"""The PRM recipe: the built verifier (``prm_model``) on generator-large's body, its score head
fitted by binary cross-entropy on Math-Shepherd labels, on CPU.

Labels are Math-Shepherd soft values: for every step prefix that the exact checker finds still
valid, the fraction of generator rollouts from it that reach the right answer; a prefix after an
invalid step gets 0 from the checker without rollouts (a rollout cannot repair a wrong running value
in this task), and the answer step gets its exact correctness.

What the head learns is how the verifier's pooled badness maps to those values (gamma and delta,
``prm_model``): everything below it is built and stays fixed, so its features are computed once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from ttc_serve.models.embedded import task
from ttc_serve.training.lm import (
    MAX_LEN,
    TrainReport,
    count_parameters,
    save_checkpoint,
    seed_everything,
    write_report,
)
from ttc_serve.training.prm_model import ProcessRewardModel, VerifierShape, build_verifier
from ttc_serve.training.rollouts import sample_solutions
from ttc_serve.training.tokenizer import PAD, build_tokenizer, token_ids


@dataclass(frozen=True)
class PrmRecipe:
    seed: int = 0
    questions: int = 3000
    # Valid step prefixes are shared by a question's samples and rolled out once, so more samples
    # per question buy more (mostly wrong) solutions to learn from at little rollout cost.
    samples_per_question: int = 8
    rollouts: int = 8
    head_steps: int = 300
    head_lr: float = 0.01
    shape: VerifierShape = field(default_factory=VerifierShape)
    threads: int = 2


SMOKE_PRM = PrmRecipe(questions=10, samples_per_question=2, rollouts=2, head_steps=10)


# ---------------------------------------------------------------- PRM recipe


@dataclass(frozen=True)
class PrmExample:
    prompt: str
    steps: tuple[str, ...]
    labels: tuple[float, ...]


def prm_labels(problems: Sequence[task.Problem], samples: Sequence[Sequence[str]],
               rollout: Callable[[list[str]], list[float]]) -> list[PrmExample]:
    """Math-Shepherd soft labels. ``rollout`` maps step-prefix prompts to success rates."""
    # Valid prefixes of a question are its canonical prefixes, so they are shared across samples:
    # collect them once, roll them out once.
    prefix_prompts: dict[str, None] = {}
    graded = []
    for problem, attempts in zip(problems, samples, strict=True):
        for text in dict.fromkeys(attempts):
            steps = task.split_steps(text)[: len(problem.ops) + 2]
            if not steps:
                continue
            grade = task.grade(problem, "\n".join(steps))
            graded.append((problem, tuple(steps), grade))
            for i, valid in enumerate(grade.steps_valid):
                if valid and not steps[i].startswith("answer"):
                    prefix_prompts[_prefix_prompt(problem, steps[: i + 1])] = None
    keys = list(prefix_prompts)
    values = dict(zip(keys, rollout(keys), strict=True))
    examples = []
    for problem, solution, grade in graded:
        labels = []
        for i, valid in enumerate(grade.steps_valid):
            if not valid:
                labels.append(0.0)
            elif solution[i].startswith("answer"):
                labels.append(1.0 if grade.correct else 0.0)
            else:
                labels.append(values[_prefix_prompt(problem, solution[: i + 1])])
        examples.append(PrmExample(task.solve_prompt(problem), solution, tuple(labels)))
    return examples


def _prefix_prompt(problem: task.Problem, steps: Sequence[str]) -> str:
    return task.solve_prompt(problem) + "".join(s + "\n" for s in steps)


def encode_prm(examples: Sequence[PrmExample]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ids, attention mask, and per-token soft targets (NaN where there is no step tag)."""
    tokenizer = build_tokenizer()
    pad, tag = token_ids()[PAD], token_ids()[task.STEP_TAG]
    rows = [tokenizer.encode(task.prm_input(ex.prompt, ex.steps)).ids[:MAX_LEN] for ex in examples]
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    targets = torch.full((len(rows), width), float("nan"))
    for i, (row, ex) in enumerate(zip(rows, examples, strict=True)):
        input_ids[i, : len(row)] = torch.tensor(row)
        attention[i, : len(row)] = 1
        positions = [j for j, t in enumerate(row) if t == tag]
        for pos, label in zip(positions, ex.labels, strict=False):
            targets[i, pos] = label
    return input_ids, attention, targets


def label_prm_examples(recipe: PrmRecipe, generator_dir: Path) -> list[PrmExample]:
    """Sample the generator on training questions and label every solution's steps with
    Math-Shepherd values from rollouts."""
    stream = task.training_problems(recipe.seed + 7)
    problems = [next(stream) for _ in range(recipe.questions)]
    prompts = [task.solve_prompt(p) for p in problems]
    samples = sample_solutions(generator_dir, prompts, recipe.samples_per_question, recipe.seed)

    def rollout(prefixes: list[str]) -> list[float]:
        completions = sample_solutions(generator_dir, prefixes, recipe.rollouts, recipe.seed + 3)
        by_prompt = {p: prob for prob in problems for p in [task.solve_prompt(prob)]}
        rates = []
        for prefix, outs in zip(prefixes, completions, strict=True):
            problem = by_prompt[prefix.split("\n", 1)[0] + "\n"]
            done = prefix.split("\n", 1)[1]
            rates.append(sum(task.grade(problem, done + o).correct for o in outs) / len(outs))
        return rates

    return prm_labels(problems, samples, rollout)


def train_prm(recipe: PrmRecipe, generator_dir: Path, body_dir: Path, out_dir: Path,
              examples: Sequence[PrmExample] | None = None) -> TrainReport:
    """Label (unless ``examples`` are given) with ``generator_dir``'s rollouts, build the verifier on
    ``body_dir``'s generator, fit its score head, and save it into ``out_dir``."""
    started = time.time()
    seed_everything(recipe.seed, recipe.threads)
    if examples is None:
        examples = label_prm_examples(recipe, generator_dir)
    report = TrainReport()
    report.phases["labelling_s"] = time.time() - started
    phase = time.time()
    model, config = build_verifier(body_dir, recipe.shape)
    report.parameters = count_parameters(model)
    features, labels, report.tokens = tag_features(model, examples)
    report.phases["features_s"] = time.time() - phase
    phase = time.time()
    report.final_loss = fit_head(model.score, features, labels, recipe.head_steps, recipe.head_lr)
    report.phases["head_fit_s"] = time.time() - phase
    report.seconds = time.time() - started
    save_checkpoint(model, config, out_dir)
    label_values = [v for ex in examples for v in ex.labels]
    write_report(out_dir, {
        "recipe": asdict(recipe), "report": asdict(report), "generator": str(generator_dir),
        "body": str(body_dir),
        "labels": {"examples": len(examples), "steps": len(label_values),
                   "mean": sum(label_values) / max(1, len(label_values)),
                   "soft_fraction": sum(0 < v < 1 for v in label_values) / max(1, len(label_values))}})
    return report


@torch.no_grad()
def tag_features(model: ProcessRewardModel, examples: Sequence[PrmExample],
                 batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The score head's input at every step tag (the built layers' output), the tag's label, and
    the number of tokens read."""
    model.eval()
    features, labels, tokens = [], [], 0
    for start in tqdm(range(0, len(examples), batch_size), desc="prm features", mininterval=10):
        input_ids, attention, targets = encode_prm(examples[start:start + batch_size])
        hidden = model.model(input_ids=input_ids, attention_mask=attention).last_hidden_state
        tagged = ~torch.isnan(targets)
        features.append(hidden[tagged])
        labels.append(targets[tagged])
        tokens += int(attention.sum())
    return torch.cat(features), torch.cat(labels), tokens


def fit_head(head: torch.nn.Module, features: torch.Tensor, labels: torch.Tensor, steps: int,
             lr: float) -> float:
    """Full-batch BCE of the head's ``p_good`` against the soft labels; returns the final loss."""
    head.train()
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.0)
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        log_probs = torch.log_softmax(head(features), dim=-1)
        loss = -(labels * log_probs[:, 1] + (1 - labels) * log_probs[:, 0]).mean()
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())
