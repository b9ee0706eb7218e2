"""The check form: a generator re-derives one step with its result written least significant digit
first (``check 114+38=`` → ``251``, that is 152), and the stage that teaches it to a trained
generator.

Why least significant digit first: the generator's wrong steps are almost all a carry (a tens or
hundreds digit off by one, written before the lower digits that decide it); written from the units
up, each digit follows the carry that decides it, and generator-small checks a step far more
exactly than it writes one (docs/reviser.md has the measurements). A revision can then cut an
attempt at its first step whose check disagrees, fix that step, and let the solve form go on.

Why a KL anchor: more solve training makes a better solver (and breaks the difficulty spread the
task is built for), training on its own samples teaches it their wrong carries, and check drills
alone erase the solve form. Matching the starting checkpoint's next-token
distributions on correct solutions holds the solve form where it was while the check is learned.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm
from transformers import LlamaForCausalLM

from ttc_serve.models.check_format import CheckFormat
from ttc_serve.models.embedded import task
from ttc_serve.models.revision_format import RevisionFormat
from ttc_serve.training import lm
from ttc_serve.training.examples import Example, solve_example

CHECK_FORM = CheckFormat()  # the embedded generator's: ``check 114+38=`` -> ``251``


def check_prompt(lhs: int, op: str, rhs: int) -> str:
    return CHECK_FORM.prompt(f"{lhs}{op}{rhs}")


def check_target(value: int) -> str:
    """``value`` least significant digit first, its sign first: 152 → ``251``, -229 → ``-922``."""
    return CHECK_FORM.write(value)


def parse_check(text: str) -> int | None:
    """The value a check completion states, or None where it states none."""
    return CHECK_FORM.read(text)


def check_drill(problem: task.Problem, rng: random.Random) -> Example:
    """One step of a correct solution of ``problem``, to be checked."""
    step = rng.choice(problem.solution_steps()[:-1])  # the last line is the answer
    match = task.STEP_RE.match(step)
    assert match is not None
    lhs, op, rhs = int(match[1]), match[2], int(match[3])
    return Example(check_prompt(lhs, op, rhs), check_target(lhs + rhs if op == "+" else lhs - rhs))


@dataclass(frozen=True)
class CheckRecipe:
    steps: int = 4000
    drills: int = 32  # check drills a step (cross-entropy)
    anchors: int = 16  # correct solutions a step, on which the KL holds the solve form
    kl_weight: float = 4.0
    lr: float = 1e-3
    seed: int = 0
    threads: int = 2


SMOKE_CHECK = CheckRecipe(steps=8, drills=8, anchors=4)


def training_record(recipe: CheckRecipe, generator_dir: Path, report: lm.TrainReport,
                    drill_loss: float, kl: float) -> dict[str, Any]:
    """The check stage's training.json: its own recipe and figures, and, as ``report``, the whole
    training of the checkpoint (the stage before it, from its training.json, plus this one) — what
    the model card and the FLOPs-matched comparison's pre-training compute read."""
    before_path = generator_dir / "training.json"
    before = json.loads(before_path.read_text()) if before_path.exists() else {}
    earlier = before.get("report", {})
    return {
        "stage": "check", "from": generator_dir.name,
        "from_sha256": hashlib.sha256((generator_dir / "model.safetensors").read_bytes()).hexdigest(),
        "recipe": asdict(recipe),
        "seconds": round(report.seconds, 1), "tokens": report.tokens,
        "final_drill_loss": drill_loss, "final_kl": kl,
        "report": {"parameters": report.parameters,
                   "seconds": earlier.get("seconds", 0.0) + report.seconds,
                   "tokens": earlier.get("tokens", 0) + report.tokens,
                   "final_loss": drill_loss,
                   "phases": {**earlier.get("phases", {}), "check_s": report.seconds}},
        "before": before}


def train_checker(recipe: CheckRecipe, generator_dir: Path, out_dir: Path) -> lm.TrainReport:
    """Fine-tune the generator at ``generator_dir`` into ``out_dir``: check drills, solve form anchored."""
    started = time.time()
    lm.seed_everything(recipe.seed, recipe.threads)
    rng = random.Random(recipe.seed)
    stream = task.training_problems(recipe.seed)
    model = LlamaForCausalLM.from_pretrained(generator_dir, dtype=torch.float32)
    anchor = LlamaForCausalLM.from_pretrained(generator_dir, dtype=torch.float32)
    anchor.eval()  # type: ignore[no-untyped-call]
    report = lm.TrainReport(parameters=lm.count_parameters(model))
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.01, betas=(0.9, 0.98))
    model.train()
    drill_loss = kl = torch.zeros(())
    for step in (bar := tqdm(range(recipe.steps), desc="check", mininterval=5)):
        for group in optimizer.param_groups:
            group["lr"] = lm.lr_schedule(step, recipe.steps, recipe.lr)
        ids, mask, labels = lm.encode([check_drill(next(stream), rng) for _ in range(recipe.drills)])
        drill_loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        report.tokens += int(mask.sum())
        ids, mask, labels = lm.encode([solve_example(next(stream)) for _ in range(recipe.anchors)])
        with torch.no_grad():
            held = torch.log_softmax(anchor(input_ids=ids, attention_mask=mask).logits[:, :-1], -1)
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits[:, :-1], -1)
        target_positions = labels[:, 1:] != -100
        # KL(anchor ‖ model) per target token: the solve form's own distribution, not a sample of it
        kl = nn.functional.kl_div(logp[target_positions], held[target_positions], log_target=True,
                                  reduction="batchmean")
        report.tokens += int(mask.sum())
        (drill_loss + recipe.kl_weight * kl).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 50 == 0:
            bar.set_postfix(drill=f"{drill_loss.item():.4f}", kl=f"{kl.item():.4f}")
    report.final_loss = drill_loss.item()
    report.seconds = time.time() - started
    # fp32: the anchored solve form is the starting one plus small updates that bf16 would round off
    lm.save_checkpoint(model, model.config, out_dir, dtype=torch.float32,
                             revision=RevisionFormat.from_model_dir(generator_dir), check=CHECK_FORM)
    record = training_record(recipe, generator_dir, report, drill_loss.item(), kl.item())
    (out_dir / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    return report
