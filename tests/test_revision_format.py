"""The revise prompt layout: rendering, validation, and where a deployment takes it from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from ttc_serve.app.settings import Settings
from ttc_serve.models.embedded import task
from ttc_serve.models.revision_format import RevisionFormat

lines = st.text(st.characters(blacklist_characters="\n"), max_size=12)


def test_both_layouts_render_byte_for_byte() -> None:
    problem = task.Problem(ops=("+", "-"), operands=(37, 5, 12), level=1)
    assert task.revise_prompt(problem, ["37+5=42\n\n42-12=30\nanswer: 30"]) == (
        "question: 37+5-12\nattempt:\n37+5=42\n42-12=30\nanswer: 30\nrevision:\n")
    assert task.revise_prompt(problem, ["37+5=42\n"], task.ATTEMPTS_FIRST) == (
        "attempt:\n37+5=42\nquestion: 37+5-12\n")


EXPECTED = {
    "{prompt}{attempts}revision:\n": lambda prompt, shown: prompt + shown + "revision:\n",
    "{attempts}{prompt}": lambda prompt, shown: shown + prompt,
    "<{attempts}|{prompt}>": lambda prompt, shown: "<" + shown + "|" + prompt + ">",
}


@given(prompt=st.text(max_size=20), attempts=st.lists(st.lists(lines, max_size=3), max_size=4),
       template=st.sampled_from(sorted(EXPECTED)))
def test_render_fills_each_field_once_and_leaves_braces_in_the_text_alone(
        prompt: str, attempts: list[list[str]], template: str) -> None:
    fmt = RevisionFormat(template, "A:")
    shown = "".join("A:" + "".join(s + "\n" for s in steps) for steps in attempts)
    assert fmt.render(prompt, attempts) == EXPECTED[template](prompt, shown)
    assert fmt.render("{attempts}", [["{prompt}"]]) == EXPECTED[template]("{attempts}", "A:{prompt}\n")


@pytest.mark.parametrize("template", ["{prompt}revision:", "{attempts}", "{prompt}{attempts}{prompt}", ""])
def test_a_template_without_both_fields_once_is_refused(template: str) -> None:
    with pytest.raises(ValueError, match="exactly once"):
        RevisionFormat(template)
    with pytest.raises(ValidationError, match="revision_template"):
        Settings(revision_template=template)


def test_the_service_takes_the_checkpoints_layout_unless_one_is_set(tmp_path: Path) -> None:
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        task.ATTEMPTS_FIRST.to_tokenizer_config()))
    assert Settings(generator_dir=tmp_path).revision_format() == task.ATTEMPTS_FIRST
    assert Settings(generator_dir=tmp_path, revision_template="{prompt}{attempts}",
                    revision_attempt_prefix="").revision_format() == RevisionFormat(
        "{prompt}{attempts}", "")
    # a checkpoint that names no layout (a GPU deployment's config-only directory) gets question first
    assert Settings(generator_dir=tmp_path / "missing").revision_format() == task.QUESTION_FIRST


def test_the_shipped_generator_names_the_layout_it_was_trained_on() -> None:
    small = Settings().generator_dir
    recipe = json.loads((small / "training.json").read_text())["recipe"]
    layout = task.REVISION_LAYOUTS[recipe.get("revision_layout", "question_first")]
    assert RevisionFormat.from_model_dir(small) == layout
