"""A character-level HF tokenizer for the embedded models.

Every printable ASCII character and the newline is one token, so token counts are exact and the
arithmetic is not blurred by merges. ``<step>`` is one added token (the PRM's step tag, like
Qwen2.5-Math-PRM's ``<extra_0>``). A post-processor prepends ``<bos>`` (vLLM does not add it by
itself), and the chat template turns a user message into the solve prompt so that
``/v1/chat/completions`` works.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors

from ttc_serve.models.embedded.task import STEP_TAG

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = [PAD, BOS, EOS, UNK]
CHARS = ["\n"] + [chr(c) for c in range(32, 127)]

# The user's message becomes ``question: <content>\n`` unless it already starts with "question:".
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "{% set content = message['content'] | trim %}"
    "{% if content.startswith('question:') %}{{ content }}{% else %}question: {{ content }}{% endif %}"
    "{{ '\\n' }}{% elif message['role'] == 'assistant' %}{{ message['content'] }}{% endif %}{% endfor %}"
)


def build_tokenizer() -> Tokenizer:
    vocab = {token: i for i, token in enumerate(SPECIALS + CHARS)}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tokenizer.decoder = decoders.Fuse()
    tokenizer.add_special_tokens(SPECIALS)
    tokenizer.add_special_tokens([STEP_TAG])
    bos_id = vocab[BOS]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, bos_id)]
    )
    return tokenizer


def save_tokenizer(directory: Path, extra_config: dict[str, str] | None = None) -> None:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json into ``directory``;
    ``extra_config``: more tokenizer_config.json keys (a generator's revise layout)."""
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    tokenizer.save(str(directory / "tokenizer.json"))
    config = {
        # The fast class by name: transformers would otherwise pick Qwen2Tokenizer for the PRM,
        # which drops spaces and newlines so that step tags never match (see shared notes).
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": PAD,
        "unk_token": UNK,
        "additional_special_tokens": [STEP_TAG],
        "model_max_length": 1024,
        "clean_up_tokenization_spaces": False,
        "chat_template": CHAT_TEMPLATE,
    }
    config.update(extra_config or {})
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    special = {"bos_token": BOS, "eos_token": EOS, "pad_token": PAD, "unk_token": UNK,
               "additional_special_tokens": [STEP_TAG]}
    (directory / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")


def token_ids() -> dict[str, int]:
    tokenizer = build_tokenizer()
    ids: dict[str, int] = {}
    for name in [*SPECIALS, STEP_TAG]:
        token_id = tokenizer.token_to_id(name)
        assert token_id is not None, name
        ids[name] = token_id
    return ids
