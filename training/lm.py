"""What the embedded models' recipes share: model shapes, example encoding, the LM training loop,
checkpoint I/O."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn
from tqdm import tqdm
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config

from ttc_serve.models.check_format import CheckFormat
from ttc_serve.models.revision_format import RevisionFormat
from ttc_serve.training.examples import Example
from ttc_serve.training.tokenizer import BOS, EOS, PAD, build_tokenizer, save_tokenizer, token_ids

MAX_LEN = 640


@dataclass(frozen=True)
class ModelSize:
    hidden: int
    layers: int
    heads: int
    ffn: int


SIZES = {
    "smoke": ModelSize(64, 2, 2, 128),
    "small": ModelSize(128, 4, 4, 384),
    "large": ModelSize(352, 8, 11, 1024),  # ~14x the small one
    "prm": ModelSize(128, 4, 4, 384),
}


@dataclass(frozen=True)
class MicroBatch:
    examples: list[Example]
    sharpness: float = 1.0  # the loss sees logits / sharpness (see GeneratorRecipe.revise_sharpness)


@dataclass
class TrainReport:
    parameters: int = 0
    seconds: float = 0.0
    tokens: int = 0
    final_loss: float = float("nan")
    phases: dict[str, float] = field(default_factory=dict)


def generator_config(size: ModelSize) -> LlamaConfig:
    ids = token_ids()
    return LlamaConfig(
        vocab_size=build_tokenizer().get_vocab_size(), hidden_size=size.hidden,
        intermediate_size=size.ffn, num_hidden_layers=size.layers, num_attention_heads=size.heads,
        num_key_value_heads=size.heads, max_position_embeddings=MAX_LEN, rms_norm_eps=1e-5,
        tie_word_embeddings=True, bos_token_id=ids[BOS], eos_token_id=ids[EOS],
        pad_token_id=ids[PAD], architectures=["LlamaForCausalLM"])


def encode(examples: Sequence[Example]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids, attention mask and labels (-100 on prompt and padding; EOS is trained)."""
    tokenizer = build_tokenizer()
    ids = token_ids()
    rows, masks = [], []
    for ex in examples:
        prompt_ids = tokenizer.encode(ex.prompt).ids  # with <bos>
        target_ids = [*tokenizer.encode(ex.target, add_special_tokens=False).ids, ids[EOS]]
        seq = (prompt_ids + target_ids)[:MAX_LEN]
        rows.append(seq)
        masks.append([0] * len(prompt_ids) + [1] * len(target_ids))
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), ids[PAD], dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (row, mask) in enumerate(zip(rows, masks, strict=True)):
        n = len(row)
        input_ids[i, :n] = torch.tensor(row)
        attention[i, :n] = 1
        labels[i, :n] = torch.where(torch.tensor(mask[:n]) == 1, torch.tensor(row), -100)
    return input_ids, attention, labels


def lr_schedule(step: int, total: int, base_lr: float, warmup: int = 50) -> float:
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base_lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def lm_loss(model: LlamaForCausalLM, micro: MicroBatch) -> tuple[torch.Tensor, int]:
    """Mean next-token loss of a micro-batch, and the tokens it holds."""
    input_ids, attention, labels = encode(micro.examples)
    tokens = int(attention.sum())
    if micro.sharpness == 1.0:
        return model(input_ids=input_ids, attention_mask=attention, labels=labels).loss, tokens
    logits = model(input_ids=input_ids, attention_mask=attention).logits[:, :-1].float()
    return nn.functional.cross_entropy((logits / micro.sharpness).flatten(0, 1),
                                       labels[:, 1:].flatten(), ignore_index=-100), tokens


def train_lm(model: LlamaForCausalLM, batches: Iterator[list[MicroBatch]], steps: int, lr: float,
              desc: str, report: TrainReport, bf16_autocast: bool = False) -> None:
    """Each step is one optimizer update over one or more micro-batches (kept apart so that short
    solve examples are not padded to the length of revise examples)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    model.train()
    for step in (bar := tqdm(range(steps), desc=desc, mininterval=5)):
        for group in optimizer.param_groups:
            group["lr"] = lr_schedule(step, steps, lr)
        micro = next(batches)
        total = sum(len(m.examples) for m in micro)
        loss = torch.zeros(())
        for part_batch in micro:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16_autocast):
                part, tokens = lm_loss(model, part_batch)
            share = len(part_batch.examples) / total
            (part * share).backward()  # type: ignore[no-untyped-call]
            loss = loss + part.detach() * share
            report.tokens += tokens
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        report.final_loss = float(loss)
        if step % 50 == 0:
            bar.set_postfix(loss=f"{float(loss):.4f}")


def seed_everything(seed: int, threads: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)


def save_checkpoint(model: nn.Module, config: LlamaConfig | Qwen2Config, out_dir: Path,
                    dtype: torch.dtype = torch.bfloat16, revision: RevisionFormat | None = None,
                    check: CheckFormat | None = None) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()
             if k != "lm_head.weight" or not config.tie_word_embeddings}
    save_file(state, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    config_dict = config.to_dict()
    config_dict["torch_dtype"] = "bfloat16" if dtype == torch.bfloat16 else "float32"
    (out_dir / "config.json").write_text(json.dumps(config_dict, indent=2) + "\n")
    extra = {**(revision.to_tokenizer_config() if revision else {}),
             **(check.to_tokenizer_config() if check else {})}
    save_tokenizer(out_dir, extra or None)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def write_report(out_dir: Path, payload: dict[str, object]) -> None:
    (out_dir / "training.json").write_text(json.dumps(payload, indent=2) + "\n")

