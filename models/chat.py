"""Render a chat conversation to the generator's prompt with its own chat template (as HF does)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ttc_serve.models.tokenizer_config import read_tokenizer_config


class ChatTemplate:
    def __init__(self, template: str, bos_token: str = "", eos_token: str = ""):
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                            undefined=jinja2.StrictUndefined)
        self._template = env.from_string(template)
        self.bos_token = bos_token
        self.eos_token = eos_token

    @classmethod
    def from_model_dir(cls, model_dir: Path) -> ChatTemplate | None:
        config = read_tokenizer_config(model_dir)
        template = config.get("chat_template")
        if not template:
            return None
        return cls(template, config.get("bos_token") or "", config.get("eos_token") or "")

    def render(self, messages: Sequence[Mapping[str, str]]) -> str:
        text = self._template.render(messages=list(messages), add_generation_prompt=True,
                                     bos_token=self.bos_token, eos_token=self.eos_token)
        # /v1/completions adds BOS itself; a template's BOS would be doubled.
        if self.bos_token and text.startswith(self.bos_token):
            text = text[len(self.bos_token):]
        return text
