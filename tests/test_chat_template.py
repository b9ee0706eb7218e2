"""Chat templates rendered as transformers renders them: the template file transformers saves, the
context it gives (tools, raise_exception), BOS left to what the serving tokenizer really adds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ttc_serve.models.chat import ChatTemplate, ChatTemplateError

# SmolLM2-135M-Instruct's own template, as transformers 5 saves it (chat_template.jinja).
SMOLLM2 = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% endif %}")

# The shape of Qwen2.5's: a branch on `tools`, attribute access to keys a message may lack, and
# raise_exception for a conversation it refuses.
QWEN_STYLE = """{%- if tools %}
    {{- '<|im_start|>system\\n# Tools\\n' }}{%- for tool in tools %}{{- tool | tojson }}{%- endfor %}
{%- elif messages[0]['role'] == 'system' %}
    {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
{%- else %}
    {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. ' }}
    {{- 'You are a helpful assistant.<|im_end|>\\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if message.role not in ['system', 'user', 'assistant'] %}
        {{- raise_exception('unknown role ' + message.role) }}
    {%- elif (message.role == 'user') or (message.role == 'assistant' and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"""


def _checkpoint(tmp_path: Path, config: dict[str, object], jinja: str | None = None) -> Path:
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    if jinja is not None:
        (tmp_path / "chat_template.jinja").write_text(jinja)
    return tmp_path


def test_smollm2_template_from_its_jinja_file_keeps_its_bos_named_token(tmp_path: Path) -> None:
    # SmolLM2 names <|im_start|> its BOS token, but its tokenizer adds none: nothing may be stripped
    directory = _checkpoint(tmp_path, {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"}, SMOLLM2)
    template = ChatTemplate.from_model_dir(directory)
    assert template is not None
    prompt = template.render([{"role": "user", "content": "What is 2+2?"}], strip_bos=False)
    assert prompt == ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
                      "Hugging Face<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
                      "<|im_start|>assistant\n")


def test_a_template_in_tokenizer_config_and_added_token_specials(tmp_path: Path) -> None:
    directory = _checkpoint(tmp_path, {"chat_template": "{{ bos_token }}{{ messages[0]['content'] }}",
                                       "bos_token": {"content": "<s>", "lstrip": False}})
    template = ChatTemplate.from_model_dir(directory)
    assert template is not None
    assert template.render([{"role": "user", "content": "hi"}]) == "<s>hi"
    assert template.render([{"role": "user", "content": "hi"}], strip_bos=True) == "hi"


def test_named_templates_use_the_default_one(tmp_path: Path) -> None:
    directory = _checkpoint(tmp_path, {"chat_template": [
        {"name": "tool_use", "template": "tools"}, {"name": "default", "template": "plain"}]})
    template = ChatTemplate.from_model_dir(directory)
    assert template is not None and template.render([]) == "plain"


def test_qwen_style_template_renders_without_tools_and_refuses_what_it_refuses() -> None:
    template = ChatTemplate(QWEN_STYLE, {"eos_token": "<|im_end|>"})
    messages = [{"role": "user", "content": "2+2"}, {"role": "assistant", "content": "4"},
                {"role": "user", "content": "and 3+3?"}]
    assert template.render(messages) == (
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
        "<|im_end|>\n<|im_start|>user\n2+2<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n"
        "<|im_start|>user\nand 3+3?<|im_end|>\n<|im_start|>assistant\n")
    with pytest.raises(ChatTemplateError, match="unknown role tool"):
        template.render([{"role": "tool", "content": "x"}])


def test_no_template_is_none(tmp_path: Path) -> None:
    assert ChatTemplate.from_model_dir(_checkpoint(tmp_path, {})) is None
