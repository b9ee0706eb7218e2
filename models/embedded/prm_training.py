"""The PRM recipe: a ``Qwen2ForProcessRewardModel`` (Qwen2 body + two-layer score head, the
Qwen2.5-Math-PRM architecture) trained on CPU.

Labels are Math-Shepherd soft values: for every step prefix that the exact checker finds still
valid, the fraction of generator rollouts from it that reach the right answer; a prefix after an
invalid step gets 0 from the checker without rollouts (a rollout cannot repair a wrong running value
in this task), and the answer step gets its exact correctness.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm
from transformers import LlamaForCausalLM, Qwen2Config, Qwen2Model

from models.embedded import task
from models.embedded.tokenizer import BOS, EOS, PAD, build_tokenizer, token_ids
from models.embedded.training import (
    MAX_LEN,
    SIZES,
    ModelSize,
    TrainReport,
    _schedule,
    _seed_everything,
    _write_report,
    count_parameters,
    sample_solutions,
    save_checkpoint,
)


@dataclass(frozen=True)
class PrmRecipe:
    size: str = "prm"
    seed: int = 0
    questions: int = 3000
    # Valid step prefixes are shared by a question's samples and rolled out once, so more samples
    # per question buy more (mostly wrong) solutions to learn from at little rollout cost.
    samples_per_question: int = 8
    rollouts: int = 8
    steps: int = 2000
    batch_size: int = 32
    lr: float = 1e-3
    # Start the PRM's body from the generator's weights, as Qwen2.5-Math-PRM starts from its policy
    # model: checking a step's arithmetic is what the generator already does when it writes one.
    init_from_generator: bool = True
    # Synthetic near misses per question: its correct solution with one slipped digit (in a result or
    # in a copied operand), carried on consistently, beside the correct solution itself. They differ
    # from a right answer in one digit, as the generator's own wrong answers mostly do, so the only
    # way to score them apart is to check the arithmetic.
    near_misses: int = 0
    # Weight of a within-question ranking loss on the last step (each right solution above each wrong
    # one of the same question); batches then hold ``questions_per_batch`` whole questions. BCE alone
    # learns how hard a question is, which ranks questions but not one question's samples.
    rank_weight: float = 0.0
    questions_per_batch: int = 8
    # Fresh layers on top of the generator's body (see ``prm_from_generator``).
    extra_layers: int = 0
    # A verification phase before the Math-Shepherd one: exact per-step validity labels (the
    # checker's, no rollouts) on the correct solution or a near miss of fresh training questions, and
    # on the generator's own labelled samples (``verify_own_share`` of each batch). Session-5 probes:
    # the generator's body learns to check a step at lr 3e-4 and not at 1e-3, and not from the soft
    # labels alone, whose signal is mostly how hard the question is. Off by default: what it learns
    # catches random slips, not yet the generator's own (the PRM card has the figures).
    verify_steps: int = 0
    verify_lr: float = 3e-4
    verify_own_share: float = 0.3
    # Share of verification examples kept in the Math-Shepherd phase's batches (so the skill stays).
    verify_mix: float = 0.0
    threads: int = 2


SMOKE_PRM = PrmRecipe(size="smoke", questions=10, samples_per_question=2, rollouts=2, steps=10,
                      batch_size=8, verify_steps=5, verify_mix=0.5)


# ---------------------------------------------------------------- model


def prm_config(size: ModelSize) -> Qwen2Config:
    ids = token_ids()
    config = Qwen2Config(
        vocab_size=build_tokenizer().get_vocab_size(), hidden_size=size.hidden,
        intermediate_size=size.ffn, num_hidden_layers=size.layers, num_attention_heads=size.heads,
        num_key_value_heads=size.heads, max_position_embeddings=MAX_LEN, rms_norm_eps=1e-5,
        tie_word_embeddings=False, bos_token_id=ids[BOS], eos_token_id=ids[EOS],
        pad_token_id=ids[PAD], architectures=["Qwen2ForProcessRewardModel"])
    config.num_labels = 2  # [p_bad, p_good] per step tag, as Qwen2.5-Math-PRM
    return config


class ProcessRewardModel(nn.Module):
    """Training twin of vLLM's Qwen2ForProcessRewardModel: same module names, so weights load as-is."""

    def __init__(self, config: Qwen2Config):
        super().__init__()
        self.model = Qwen2Model(config)
        self.score = nn.Sequential(nn.Linear(config.hidden_size, config.hidden_size), nn.ReLU(),
                                   nn.Linear(config.hidden_size, 2))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        logits: torch.Tensor = self.score(hidden)
        return logits


def prm_from_generator(generator_dir: Path,
                       extra_layers: int = 0) -> tuple[ProcessRewardModel, Qwen2Config]:
    """A PRM whose Qwen2 body computes exactly what the Llama generator's body computes.

    The two architectures differ only in Qwen2's q/k/v biases, which start at zero; the score head is
    new. (The generator's LM head is dropped.) ``extra_layers`` fresh layers go on top, with zero
    output projections so that they start as the identity (more depth for checking a step; in the
    session-4 probes it made no difference, see the PRM card)."""
    generator = LlamaForCausalLM.from_pretrained(generator_dir, dtype=torch.float32)
    g = generator.config
    config = prm_config(ModelSize(g.hidden_size, g.num_hidden_layers + extra_layers,
                                  g.num_attention_heads, g.intermediate_size))
    model = ProcessRewardModel(config)
    body = {k.removeprefix("model."): v for k, v in generator.state_dict().items()
            if k.startswith("model.")}
    missing, unexpected = model.model.load_state_dict(body, strict=False)
    fresh = tuple(f"layers.{i}." for i in range(g.num_hidden_layers, config.num_hidden_layers))
    assert not unexpected and all(k.endswith("_proj.bias") or k.startswith(fresh) for k in missing), (
        missing, unexpected)
    with torch.no_grad():
        for name, param in model.model.named_parameters():
            if name.endswith("_proj.bias") or (name.startswith(fresh) and name.endswith(
                    ("o_proj.weight", "down_proj.weight"))):
                param.zero_()
    return model, config


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


def near_miss(problem: task.Problem, rng: random.Random) -> str:
    """The correct solution with one slipped digit at a random step, carried on consistently.

    Half the slips are in the step's result, half in the operand it copies from the question."""
    slip_at = rng.randrange(len(problem.ops))
    in_operand = rng.random() < 0.5
    value, steps = problem.operands[0], []
    for i, (op, operand) in enumerate(zip(problem.ops, problem.operands[1:], strict=True)):
        if i == slip_at and in_operand:
            operand = _slip(operand, rng)
        new = value + operand if op == "+" else value - operand
        if i == slip_at and not in_operand:
            new = _slip(new, rng)
        steps.append(f"{value}{op}{operand}={new}")
        value = new
    steps.append(f"{task.ANSWER_PREFIX}{value}")
    return "".join(step + "\n" for step in steps)


def _slip(number: int, rng: random.Random) -> int:
    """``number`` with one of its digits replaced by another (no new leading zero; sign kept)."""
    digits = list(str(abs(number)))
    at = rng.randrange(len(digits))
    choices = [d for d in "0123456789" if d != digits[at] and not (at == 0 and d == "0" and len(digits) > 1)]
    digits[at] = rng.choice(choices)
    slipped = int("".join(digits))
    return -slipped if number < 0 else slipped


def exact_example(problem: task.Problem, solution: str) -> PrmExample:
    """``solution`` labelled by the exact checker: 1 for each valid step, 0 from the first slip on."""
    steps = tuple(task.split_steps(solution))
    grade = task.grade(problem, solution)
    return PrmExample(task.solve_prompt(problem), steps, tuple(float(v) for v in grade.steps_valid))


def verification_examples(own: Sequence[PrmExample], own_share: float, seed: int,
                          rng: random.Random) -> Iterator[PrmExample]:
    """The verification phase's stream: the generator's own solutions relabelled exactly
    (``own_share`` of them), else a fresh training question's correct solution or a near miss of it,
    half and half."""
    relabelled = [exact_example(problem, "\n".join(ex.steps)) for ex in own
                  if (problem := task.parse_question(ex.prompt)) is not None]
    stream = task.training_problems(seed)
    while True:
        if relabelled and rng.random() < own_share:
            yield relabelled[rng.randrange(len(relabelled))]
        else:
            problem = next(stream)
            yield exact_example(problem, problem.solution() if rng.random() < 0.5
                                else near_miss(problem, rng))


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
    """Sample the generator on training questions (plus the synthetic near misses) and label every
    solution's steps with Math-Shepherd values from rollouts."""
    rng = random.Random(recipe.seed + 2)
    stream = task.training_problems(recipe.seed + 7)
    problems = [next(stream) for _ in range(recipe.questions)]
    prompts = [task.solve_prompt(p) for p in problems]
    samples = sample_solutions(generator_dir, prompts, recipe.samples_per_question, recipe.seed)
    if recipe.near_misses:
        samples = [[*row, p.solution(), *(near_miss(p, rng) for _ in range(recipe.near_misses))]
                   for p, row in zip(problems, samples, strict=True)]

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


def _question_batches(examples: Sequence[PrmExample], recipe: PrmRecipe,
                      rng: random.Random) -> Iterator[list[PrmExample]]:
    """Batches of whole questions: ``questions_per_batch`` questions, an equal share of each one's
    solutions, so that the ranking loss has right and wrong samples of one question to compare."""
    by_question: dict[str, list[PrmExample]] = {}
    for ex in examples:
        by_question.setdefault(ex.prompt, []).append(ex)
    questions = list(by_question.values())
    per_question = max(1, recipe.batch_size // recipe.questions_per_batch)
    while True:
        batch: list[PrmExample] = []
        for group in rng.sample(questions, min(recipe.questions_per_batch, len(questions))):
            batch.extend(rng.sample(group, min(per_question, len(group))))
        yield batch


def _ranking_loss(logits: torch.Tensor, targets: torch.Tensor,
                  batch: Sequence[PrmExample]) -> torch.Tensor:
    """Mean logistic loss of (wrong − right) last-step margins over each question's pairs."""
    has_tag = ~torch.isnan(targets)
    last = has_tag.shape[1] - 1 - has_tag.flip(1).int().argmax(dim=1)
    margin = logits[torch.arange(len(batch)), last].diff(dim=-1).squeeze(-1)  # logit good − bad
    terms = []
    for i, a in enumerate(batch):
        for j, b in enumerate(batch):
            if a.prompt == b.prompt and a.labels[-1] == 1.0 and b.labels[-1] == 0.0:
                terms.append(torch.nn.functional.softplus(margin[j] - margin[i]))
    return torch.stack(terms).mean() if terms else logits.sum() * 0.0


def train_prm(recipe: PrmRecipe, generator_dir: Path, out_dir: Path,
              examples: Sequence[PrmExample] | None = None) -> TrainReport:
    """Label (unless ``examples`` are given) and train a PRM into ``out_dir``: the verification phase
    (if any), then the Math-Shepherd phase."""
    started = time.time()
    _seed_everything(recipe.seed, recipe.threads)
    rng = random.Random(recipe.seed + 1)
    if examples is None:
        examples = label_prm_examples(recipe, generator_dir)
    report = TrainReport()
    report.phases["labelling_s"] = time.time() - started
    if recipe.init_from_generator:
        model, config = prm_from_generator(generator_dir, recipe.extra_layers)
    else:
        config = prm_config(SIZES[recipe.size])
        model = ProcessRewardModel(config)
    report.parameters = count_parameters(model)
    model.train()
    pool = list(examples)
    verify = verification_examples(pool, recipe.verify_own_share, recipe.seed + 11, rng)
    if recipe.verify_steps:
        phase = time.time()
        _train_phase(model, (list(itertools.islice(verify, recipe.batch_size)) for _ in itertools.count()),
                     recipe.verify_steps, recipe.verify_lr, "prm verify", report)
        report.phases["verify_training_s"] = time.time() - phase
    phase = time.time()
    grouped = _question_batches(pool, recipe, rng) if recipe.rank_weight > 0 else None

    def shepherd_batches() -> Iterator[list[PrmExample]]:
        while True:
            batch = (next(grouped) if grouped is not None
                     else rng.sample(pool, min(recipe.batch_size, len(pool))))
            mixed = round(recipe.verify_mix * len(batch))
            yield batch[mixed:] + list(itertools.islice(verify, mixed)) if mixed else batch

    _train_phase(model, shepherd_batches(), recipe.steps, recipe.lr, "prm", report,
                 rank_weight=recipe.rank_weight)
    report.phases["training_s"] = time.time() - phase
    report.seconds = time.time() - started
    save_checkpoint(model, config, out_dir)
    label_values = [v for ex in examples for v in ex.labels]
    _write_report(out_dir, {
        "recipe": asdict(recipe), "report": asdict(report), "generator": str(generator_dir),
        "labels": {"examples": len(examples), "steps": len(label_values),
                   "mean": sum(label_values) / max(1, len(label_values)),
                   "soft_fraction": sum(0 < v < 1 for v in label_values) / max(1, len(label_values))}})
    return report


def _train_phase(model: ProcessRewardModel, batches: Iterator[list[PrmExample]], steps: int,
                 lr: float, desc: str, report: TrainReport, rank_weight: float = 0.0) -> None:
    """BCE on the (soft or exact) step labels at the step tags; a fresh optimizer and schedule."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    for step in (bar := tqdm(range(steps), desc=desc, mininterval=5)):
        for group in optimizer.param_groups:
            group["lr"] = _schedule(step, steps, lr)
        batch = next(batches)
        input_ids, attention, targets = encode_prm(batch)
        logits = model(input_ids, attention)
        mask = ~torch.isnan(targets)
        log_probs = torch.log_softmax(logits[mask], dim=-1)
        soft = targets[mask]
        loss = -(soft * log_probs[:, 1] + (1 - soft) * log_probs[:, 0]).mean()
        if rank_weight > 0:
            loss = loss + rank_weight * _ranking_loss(logits, targets, batch)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        report.tokens += int(attention.sum())
        report.final_loss = float(loss.detach())
        if step % 50 == 0:
            bar.set_postfix(loss=f"{report.final_loss:.4f}")
