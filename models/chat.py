"""Render a chat conversation to the generator's prompt with its own chat template, as transformers'
``apply_chat_template`` renders it: the same Jinja environment (sandboxed, ``trim_blocks``,
``lstrip_blocks``, loop controls, ``raise_exception``, ``strftime_now``, a ``tojson`` that keeps
non-ASCII text), the same context (``messages``, ``tools`` and ``documents`` as None,
``add_generation_prompt``, the special tokens by name).

The template lives where transformers saves it: ``chat_template.jinja`` beside the tokenizer
(transformers 4.43 and later), else the ``chat_template`` key of ``tokenizer_config.json`` (a string,
or a list of named templates of which ``default`` is used).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ttc_serve.models.tokenizer_config import read_tokenizer_config

SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token",
                  "mask_token")


class ChatTemplateError(ValueError):
    """The template refused the conversation (``raise_exception``, or a conversation it cannot
    render): the client's input, not the server, is at fault."""


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


def _token_text(value: Any) -> str:
    """A special token as tokenizer_config.json writes it: a string, or an AddedToken dict."""
    if isinstance(value, dict):
        return str(value.get("content") or "")
    return str(value or "")


class ChatTemplate:
    def __init__(self, template: str, special_tokens: Mapping[str, str] | None = None):
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                            extensions=[jinja2.ext.loopcontrols])
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = _strftime_now
        self._template = env.from_string(template)
        self.special_tokens = dict(special_tokens or {})

    @property
    def bos_token(self) -> str:
        return self.special_tokens.get("bos_token", "")

    @classmethod
    def from_model_dir(cls, model_dir: Path) -> ChatTemplate | None:
        config = read_tokenizer_config(model_dir)
        jinja_file = model_dir / "chat_template.jinja"
        template: Any = jinja_file.read_text() if jinja_file.exists() else config.get("chat_template")
        if isinstance(template, list):  # named templates
            template = next((t.get("template") for t in template if t.get("name") == "default"), None)
        if not template:
            return None
        return cls(str(template), {name: _token_text(config[name]) for name in SPECIAL_TOKENS
                                   if config.get(name)})

    def render(self, messages: Sequence[Mapping[str, Any]], strip_bos: bool = False) -> str:
        """The prompt for ``messages``, ending in the generation prompt. ``strip_bos``: the serving
        tokenizer adds BOS itself, so a BOS the template writes would be doubled."""
        try:
            text = self._template.render(messages=list(messages), tools=None, documents=None,
                                         add_generation_prompt=True, **self.special_tokens)
        except jinja2.exceptions.TemplateError as exc:
            raise ChatTemplateError(f"the model's chat template refused these messages: {exc}") from None
        if strip_bos and self.bos_token and text.startswith(self.bos_token):
            text = text[len(self.bos_token):]
        return text
