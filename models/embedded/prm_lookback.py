"""A PRM body with a one-position look-back built in (research building block; not in the shipped
recipe yet).

Why: the signal that tells a question's right samples from its wrong ones is the generator's own
probability of each digit it wrote (see the PRM card). The generator forms that distribution at the
position *before* the digit, and the PRM can only read the digit at its own position; fine-tuned
heads did not learn to carry the comparison across that one position. So this layer does it by
construction: on top of the generator's body, one Qwen2 layer whose head 0 attends to the previous
position and copies that position's digit logits (the generator's tied LM-head rows for '0'..'9')
into ten residual directions. The rest of that layer and any layers above it start as the identity
and are trained (they pick out the written digit's logit and pool it to the step tag).

How the head attends to the previous position with no content: its query and key are constant
(the q/k biases; weights zero). After RoPE, a query at position m and a key at n score
``sum_p c * cos((m - n - 1) * theta_p)`` over the rotary planes p used, which peaks at m - n = 1.
Planes 0-4 give the widest margin over every other distance up to the context length (0.68 per
unit of c), so ``amplitude`` 140 puts ~17 logits between the previous position and any other.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import cast

import torch
from transformers import LlamaForCausalLM, Qwen2Config
from transformers.models.qwen2.modeling_qwen2 import Qwen2DecoderLayer

from models.embedded.prm_training import ProcessRewardModel, prm_from_generator
from models.embedded.tokenizer import build_tokenizer

PLANES = (0, 1, 2, 3, 4)
DIGITS = tuple(str(d) for d in range(10))


def prm_with_lookback(generator_dir: Path, fresh_layers: int = 1, amplitude: float = 140.0,
                      out_scale: float = 0.1) -> tuple[ProcessRewardModel, Qwen2Config, torch.Tensor]:
    """The generator's body, the look-back layer, then ``fresh_layers`` identity-initialised layers.

    Returns the model, its config and the (hidden x 10) orthonormal directions the copied digit
    logits are written along (scaled by ``out_scale``, to stay near the residual's own size)."""
    generator = LlamaForCausalLM.from_pretrained(generator_dir, dtype=torch.float32)
    model, config = prm_from_generator(generator_dir, extra_layers=1 + fresh_layers)
    layer = cast(Qwen2DecoderLayer, model.model.layers[generator.config.num_hidden_layers])
    head_dim = config.hidden_size // config.num_attention_heads
    half = head_dim // 2
    rope = cast(dict[str, float], config.rope_parameters or {})
    theta = float(rope.get("rope_theta", 10000.0))
    vocab = build_tokenizer().get_vocab()
    scale = math.sqrt(amplitude)
    attention = layer.self_attn
    q_proj, k_proj, v_proj, o_proj = (attention.q_proj, attention.k_proj, attention.v_proj,
                                      attention.o_proj)
    with torch.no_grad():
        # The values read the same normalised state the generator's LM head reads.
        layer.input_layernorm.weight.copy_(generator.model.norm.weight)
        for projection in (q_proj, k_proj, v_proj):
            projection.weight[:head_dim].zero_()
            projection.bias[:head_dim].zero_()
        for plane in PLANES:
            angle = theta ** (-2 * plane / head_dim)
            q_proj.bias[plane] = scale
            k_proj.bias[plane] = scale * math.cos(angle)
            k_proj.bias[plane + half] = scale * math.sin(angle)
        for row, digit in enumerate(DIGITS):
            v_proj.weight[row] = generator.lm_head.weight[vocab[digit]]
        directions, _ = torch.linalg.qr(
            torch.randn(config.hidden_size, len(DIGITS), generator=torch.Generator().manual_seed(0)))
        o_proj.weight.zero_()
        o_proj.weight[:, : len(DIGITS)] = out_scale * directions
    return model, config, directions


def trainable_with_lookback(name: str, body_layers: int) -> bool:
    """Which parameters train: the look-back layer's MLP (its attention stays as built), the layers
    above it, the final norm and the score head; the generator's body stays frozen."""
    if name.startswith("score."):
        return True
    name = name.removeprefix("model.")
    if name.startswith("norm."):
        return True
    if not name.startswith("layers."):
        return False
    index = int(name.split(".")[1])
    if index == body_layers:
        return ".mlp." in name or "post_attention_layernorm" in name
    return index > body_layers
