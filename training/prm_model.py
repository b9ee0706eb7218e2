"""The embedded PRM's model: a ``Qwen2ForProcessRewardModel`` built on generator-large's body.

Why built: a verifier needs to know more than the generator it checks, and in this task what it
needs is how sure a stronger model is of each digit a solution wrote (the PRM card has the
measurements: fine-tuned heads did not learn to read that signal; read exactly, it beats majority
voting). The generator forms that distribution at the position *before* the digit, so the verifier
is built to read it there:

1. The body is generator-large's, unchanged. The residual stream is one attention head wider; the
   body neither reads nor writes the extra channels (zero weights), and the embedding puts tiny
   one-hots of the digits and of the newline there (``EPS``: they move the body's RMSNorms by ~1e-7).
   The step tag takes the newline's place and embedding, so the body sees exactly the text the
   generator saw (a tag *inserted* before each newline shifted its positions: within-question AUROC
   .886 → .775 on dev, level 2).
2. Look-back layer: head 0 attends to the previous position (content-free q/k biases on the fastest
   RoPE planes) and copies its ten digit logits (generator-large's LM-head rows); head 1 attends
   everywhere to a value bias and writes a constant ``K`` that dominates every later RMSNorm, so the
   layers above read their channels linearly.
3. Badness layer: head 0 finds the question's newline (content attention on the slowest RoPE plane),
   flagging positions after the question; the MLP computes each written digit's badness,
   ``sum_j silu(a * (z_j - z_w + m)) / a`` over the other digits j (a smooth hinge on how far the
   written digit w fell below each alternative; 0 for a confident digit).
4. Pool layer: each position attends to all before it with weight ``exp(beta * badness)``, a soft
   maximum of the badness so far (a solution is as wrong as its worst digit).
5. Score head: ``p_good = sigmoid(gamma * (delta - pooled))``; the recipe fits gamma and delta on
   Math-Shepherd labels (``prm_training``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch
from torch import nn
from transformers import LlamaForCausalLM, Qwen2Config, Qwen2Model
from transformers.models.llama.modeling_llama import LlamaDecoderLayer
from transformers.models.qwen2.modeling_qwen2 import Qwen2Attention, Qwen2DecoderLayer

from ttc_serve.models.embedded.task import STEP_TAG
from ttc_serve.training.lm import MAX_LEN, ModelSize
from ttc_serve.training.tokenizer import BOS, EOS, PAD, build_tokenizer, token_ids

EPS = 2.0**-10  # the embedding's channel one-hots
K = 2.0**17  # the constant channel
GATE_OFF = 1000.0  # pushes a badness unit's gate far below zero before the question ends
DIGITS = tuple(str(d) for d in range(10))
LOOKBACK_PLANES = (0, 1, 2, 3, 4)


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


@dataclass(frozen=True)
class VerifierShape:
    hinge_slope: float = 4.0  # a: sharpness of the badness hinge
    hinge_margin: float = 2.0  # m: a digit this many logits ahead of every other one is not bad
    pool_sharpness: float = 10.0  # beta
    gamma: float = 1.0
    delta: float = 1.0
    lookback_amplitude: float = 140.0  # ~17 logits between the previous position and any other
    newline_logit: float = 30.0  # the question's newline over any other position


@dataclass(frozen=True)
class Channels:
    """Where the built layers keep their values: in the extra head's width above the body's."""

    body: int

    def digit(self, d: int) -> int:
        return self.body + d

    @property
    def newline(self) -> int:
        return self.body + 10

    def logit(self, d: int) -> int:
        return self.body + 11 + d

    @property
    def const(self) -> int:
        return self.body + 21

    @property
    def after(self) -> int:
        return self.body + 22

    @property
    def bad(self) -> int:
        return self.body + 23

    @property
    def pool(self) -> int:
        return self.body + 24


BUILT_LAYERS = 3


def build_verifier(body_dir: Path, shape: VerifierShape = VerifierShape()
                   ) -> tuple[ProcessRewardModel, Qwen2Config]:
    """The verifier on the generator in ``body_dir`` (see the module docstring)."""
    generator = LlamaForCausalLM.from_pretrained(body_dir, dtype=torch.float32)
    g = generator.config
    head_dim = g.hidden_size // g.num_attention_heads
    assert g.num_key_value_heads == g.num_attention_heads and head_dim >= 25
    assert g.intermediate_size >= 90  # one badness unit per (written, other) digit pair
    width = g.hidden_size + head_dim
    config = prm_config(ModelSize(width, g.num_hidden_layers + BUILT_LAYERS,
                                  g.num_attention_heads + 1, g.intermediate_size))
    assert config.rope_parameters == g.rope_parameters, (config.rope_parameters, g.rope_parameters)
    # RMSNorm averages over the wider stream: with the norm weights rescaled (``_copy_body``) and
    # epsilon scaled alike, each body norm computes exactly the generator's.
    config.rms_norm_eps = g.rms_norm_eps * g.hidden_size / width
    model = ProcessRewardModel(config)
    with torch.no_grad():
        for param in model.parameters():
            param.zero_()
        _copy_body(model, generator, width)
        ch = Channels(g.hidden_size)
        built = [cast(Qwen2DecoderLayer, layer) for layer in model.model.layers[g.num_hidden_layers:]]
        _lookback_layer(built[0], generator, ch, head_dim, width, shape)
        _badness_layer(built[1], ch, head_dim, width, shape)
        _pool_layer(built[2], ch, head_dim, width, shape)
        model.model.norm.weight[ch.pool] = _reads(width, 1.0)
        model.model.norm.weight[ch.const] = _reads(width, K)
        first, last = model.score[0], model.score[2]
        assert isinstance(first, nn.Linear) and isinstance(last, nn.Linear)
        first.weight[0, ch.pool] = 1.0  # unit 0: the pooled badness (>= 0)
        first.weight[1, ch.const] = 1.0  # unit 1: 1
        last.weight[1, 0] = -shape.gamma
        last.weight[1, 1] = shape.gamma * shape.delta
    return model, config


def _reads(width: int, scale: float) -> float:
    """An RMSNorm weight that reads a channel holding ``scale * v`` as ``v`` (``K`` dominates the
    norm, so the normalised stream is ``x * sqrt(width) / K``)."""
    return K / (math.sqrt(width) * scale)


def _copy_body(model: ProcessRewardModel, generator: LlamaForCausalLM, width: int) -> None:
    g = generator.config
    body = g.hidden_size
    # RMSNorm averages over the wider stream, whose extra channels are ~0 in the body: rescale.
    rescale = math.sqrt(body / width)
    vocab = build_tokenizer().get_vocab()
    ch = Channels(body)
    embed = model.model.embed_tokens.weight
    embed[:, :body] = generator.model.embed_tokens.weight
    for d, digit in enumerate(DIGITS):
        embed[vocab[digit], ch.digit(d)] = EPS
    embed[vocab["\n"], ch.newline] = EPS
    embed[vocab[STEP_TAG], :body] = generator.model.embed_tokens.weight[vocab["\n"]]
    for src_layer, dst_layer in zip(generator.model.layers, model.model.layers, strict=False):
        src, dst = cast(LlamaDecoderLayer, src_layer), cast(Qwen2DecoderLayer, dst_layer)
        dst.input_layernorm.weight[:body] = src.input_layernorm.weight * rescale
        dst.post_attention_layernorm.weight[:body] = src.post_attention_layernorm.weight * rescale
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            getattr(dst.self_attn, name).weight[:body, :body] = getattr(src.self_attn, name).weight
        for name in ("gate_proj", "up_proj"):
            getattr(dst.mlp, name).weight[:, :body] = getattr(src.mlp, name).weight
        dst.mlp.down_proj.weight[:body, :] = src.mlp.down_proj.weight


def _angle(config_theta: float, plane: int, head_dim: int) -> float:
    return float(config_theta ** (-2 * plane / head_dim))


def _theta(layer: Qwen2DecoderLayer) -> float:
    config = layer.self_attn.config
    theta = (config.rope_parameters or {}).get("rope_theta")
    return float(theta) if theta is not None else 10000.0


def _lookback_layer(layer: Qwen2DecoderLayer, generator: LlamaForCausalLM, ch: Channels, head_dim: int,
                    width: int, shape: VerifierShape) -> None:
    body = generator.config.hidden_size
    layer.input_layernorm.weight[:body] = generator.model.norm.weight * math.sqrt(body / width)
    attention = layer.self_attn
    half = head_dim // 2
    # Head 0: after RoPE a query at m and a key at n score sum_p c * cos((m - n - 1) * theta_p),
    # which peaks at m - n = 1 (the scores are divided by sqrt(head_dim); the amplitude is after it).
    c = math.sqrt(shape.lookback_amplitude * math.sqrt(head_dim))
    for plane in LOOKBACK_PLANES:
        angle = _angle(_theta(layer), plane, head_dim)
        attention.q_proj.bias[plane] = c
        attention.k_proj.bias[plane] = c * math.cos(angle)
        attention.k_proj.bias[plane + half] = c * math.sin(angle)
    vocab = build_tokenizer().get_vocab()
    for d, digit in enumerate(DIGITS):
        attention.v_proj.weight[d, :body] = generator.lm_head.weight[vocab[digit]]
        attention.o_proj.weight[ch.logit(d), d] = 1.0
    # Head 1: no query or key, so uniform attention; its value is a bias, so the output is constant.
    attention.v_proj.bias[head_dim] = 1.0
    attention.o_proj.weight[ch.const, head_dim] = K


def _content_head(attention: Qwen2Attention, head_dim: int, source: int, logit: float) -> None:
    """Head 0 scores key positions by channel ``source`` (read as is) times ``logit``, on the slowest
    RoPE plane (cos of its angle stays above 0.98 over the whole context), and reads that channel."""
    slow = head_dim // 2 - 1
    attention.q_proj.bias[slow] = logit * math.sqrt(head_dim)
    attention.k_proj.weight[slow, source] = 1.0
    attention.v_proj.weight[0, source] = 1.0


def _badness_layer(layer: Qwen2DecoderLayer, ch: Channels, head_dim: int, width: int,
                   shape: VerifierShape) -> None:
    layer.input_layernorm.weight[ch.newline] = _reads(width, EPS)
    _content_head(layer.self_attn, head_dim, ch.newline, shape.newline_logit)
    layer.self_attn.o_proj.weight[ch.after, 0] = 1.0  # 1 from the question's newline on, else 0
    norm = layer.post_attention_layernorm.weight
    for d in range(10):
        norm[ch.digit(d)] = _reads(width, EPS)
        norm[ch.logit(d)] = _reads(width, 1.0)
    norm[ch.const] = _reads(width, K)
    norm[ch.after] = _reads(width, 1.0)
    a, m = shape.hinge_slope, shape.hinge_margin
    mlp = layer.mlp
    unit = 0
    for written in range(10):
        for other in range(10):
            if other == written:
                continue
            mlp.gate_proj.weight[unit, ch.logit(other)] = a
            mlp.gate_proj.weight[unit, ch.logit(written)] = -a
            mlp.gate_proj.weight[unit, ch.const] = a * m - GATE_OFF
            mlp.gate_proj.weight[unit, ch.after] = GATE_OFF
            mlp.up_proj.weight[unit, ch.digit(written)] = 1.0 / a  # 0 unless this digit was written
            mlp.down_proj.weight[ch.bad, unit] = 1.0
            unit += 1


def _pool_layer(layer: Qwen2DecoderLayer, ch: Channels, head_dim: int, width: int,
                shape: VerifierShape) -> None:
    layer.input_layernorm.weight[ch.bad] = _reads(width, 1.0)
    _content_head(layer.self_attn, head_dim, ch.bad, shape.pool_sharpness)
    layer.self_attn.o_proj.weight[ch.pool, 0] = 1.0
