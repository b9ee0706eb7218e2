"""The built look-back layer copies the generator's digit logits from the previous position."""

from __future__ import annotations

import torch
from transformers import LlamaForCausalLM

from app.settings import EMBEDDED_DIR
from models.embedded.prm_lookback import DIGITS, prm_with_lookback, trainable_with_lookback
from models.embedded.tokenizer import BOS, build_tokenizer

GENERATOR = EMBEDDED_DIR / "generator-small"


def test_each_position_gets_the_previous_positions_digit_logits() -> None:
    model, config, directions = prm_with_lookback(GENERATOR, fresh_layers=1)
    generator = LlamaForCausalLM.from_pretrained(GENERATOR, dtype=torch.float32).eval()
    vocab = build_tokenizer().get_vocab()
    text = "question: 37+85-12\n37+85=122\n122-12=110\nanswer: 110\n" * 3  # long enough to alias
    ids = torch.tensor([[vocab[BOS]] + [vocab[c] for c in text]])
    body = generator.config.num_hidden_layers
    seen: dict[str, torch.Tensor] = {}
    model.model.layers[body].self_attn.register_forward_hook(
        lambda _m, _a, out: seen.__setitem__("attention", out[0]))
    with torch.no_grad():
        model.eval()
        model(ids, torch.ones_like(ids))
        expected = generator(ids).logits[0][:, [vocab[d] for d in DIGITS]]
    copied = seen["attention"][0] @ directions / 0.1
    assert torch.allclose(copied[1:], expected[:-1], atol=1e-3)
    assert config.num_hidden_layers == body + 2


def test_only_the_layers_above_the_body_and_the_head_train() -> None:
    assert trainable_with_lookback("score.0.weight", 4)
    assert trainable_with_lookback("model.norm.weight", 4)
    assert trainable_with_lookback("model.layers.4.mlp.down_proj.weight", 4)
    assert trainable_with_lookback("model.layers.5.self_attn.q_proj.weight", 4)
    assert not trainable_with_lookback("model.layers.4.self_attn.k_proj.bias", 4)
    assert not trainable_with_lookback("model.layers.3.mlp.up_proj.weight", 4)
    assert not trainable_with_lookback("model.embed_tokens.weight", 4)
