"""FLOPs cost model read from a model's HF ``config.json``.

A forward pass costs ``2 * N`` FLOPs per token for the weight matmuls (N = parameters that take part
in matmuls: attention, MLP, and the output head, counted once when tied to the embedding; the
embedding lookup is free) plus, for the token at a position that attends to ``context`` tokens,
``4 * n_layers * context * heads * head_dim``: QK^T and AV, each a multiply-add over ``head_dim`` for
every query head and attended token. Grouped-query attention shares keys and values between heads
but not this work, so it is counted in query heads. Costs are computed from the token counts the
backend reports, position by position, so a long prompt costs more per token than a short one.
``tests/test_flops.py`` checks the count against torch's own FLOP counter on the HF models.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class FlopsModel:
    matmul_params: int
    n_layers: int
    attention_width: int  # query heads x head_dim

    @classmethod
    def from_hf_config(cls, config: dict[str, Any]) -> FlopsModel:
        d = int(config["hidden_size"])
        layers = int(config["num_hidden_layers"])
        heads = int(config["num_attention_heads"])
        kv_heads = int(config.get("num_key_value_heads") or heads)
        head_dim = int(config.get("head_dim") or d // heads)
        ffn = int(config["intermediate_size"])
        attention = d * heads * head_dim * 2 + d * kv_heads * head_dim * 2  # q, o and k, v
        mlp = 3 * d * ffn  # gate, up, down (SwiGLU)
        architectures = config.get("architectures") or []
        if any("ProcessRewardModel" in a or "RewardModel" in a for a in architectures):
            head = d * d + d * int(config.get("num_labels", 2))  # score: Linear(d, d), Linear(d, labels)
        else:
            head = d * int(config["vocab_size"])  # the LM head (a matmul even when tied)
        return cls(matmul_params=layers * (attention + mlp) + head, n_layers=layers,
                   attention_width=heads * head_dim)

    @classmethod
    def from_model_dir(cls, model_dir: Path) -> FlopsModel:
        return cls.from_hf_config(json.loads((model_dir / "config.json").read_text()))

    @property
    def flops_per_token(self) -> float:
        """The weight-matmul cost of one token, without the attention term."""
        return 2.0 * self.matmul_params

    def span(self, start: int, end: int) -> float:
        """FLOPs to process the tokens at positions ``start .. end-1`` (each attends to pos+1 tokens)."""
        if end <= start:
            return 0.0
        count = end - start
        context_sum = (start + 1 + end) * count / 2  # sum of (pos + 1) over the span
        return 2.0 * self.matmul_params * count + 4.0 * self.n_layers * self.attention_width * context_sum

    def sequence(self, prompt_tokens: int, cached_tokens: int = 0, generated: int = 0) -> float:
        """A prompt (its cached prefix is free) followed by ``generated`` new tokens."""
        cached = min(max(cached_tokens, 0), prompt_tokens)
        return self.span(cached, prompt_tokens) + self.span(prompt_tokens, prompt_tokens + generated)

    def generation(self, prompt_tokens: int, cached_tokens: int, completion_tokens: list[int]) -> float:
        """One prompt computed once, then each of its samples decoded on top of it."""
        prompt = self.span(min(max(cached_tokens, 0), prompt_tokens), prompt_tokens)
        return prompt + sum(self.span(prompt_tokens, prompt_tokens + c) for c in completion_tokens)
