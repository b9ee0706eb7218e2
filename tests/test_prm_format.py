"""Each PRM adapter's exact input, against the format its model card gives."""

from __future__ import annotations

from ttc_serve.models.prm_format import QWEN_MATH_SYSTEM, prm_format

QUESTION = "Janet has 3 apples and buys 2 more. How many apples does she have?"
STEPS = ["Step 1: She starts with 3 apples.", "Step 2: 3 + 2 = 5. The answer is: 5"]


def test_qwen25_math_prm_is_the_cards_chat_layout_with_extra_0_after_every_step() -> None:
    """The card: messages system / user (query) / assistant ("<extra_0>".join(steps) + "<extra_0>"),
    rendered by Qwen2.5's chat template without a generation prompt."""
    form = prm_format("qwen2.5-math-prm")
    expected = ("<|im_start|>system\n" + QWEN_MATH_SYSTEM + "<|im_end|>\n"
                "<|im_start|>user\n" + QUESTION + "<|im_end|>\n"
                "<|im_start|>assistant\n" + "<extra_0>".join(STEPS) + "<extra_0><|im_end|>\n")
    assert form.text(QUESTION, STEPS) == expected
    assert form.text(QUESTION, STEPS).count("<extra_0>") == len(STEPS)
    assert form.score([0.2, 0.8]) == 0.8  # softmax over [negative, positive]


def test_math_shepherd_is_question_space_steps_with_ki_tags() -> None:
    """The card: f"{question} {output}", output = "Step 1: ... ки\\nStep 2: ... ки"; the step score
    is P(+) against P(-), so with returned_token_ids [id(+), id(-)] the first entry."""
    form = prm_format("math-shepherd")
    assert form.text(QUESTION, STEPS) == f"{QUESTION} {STEPS[0]} ки\n{STEPS[1]} ки"
    assert form.score([0.9, 0.1]) == 0.9


def test_embedded_puts_its_tag_in_place_of_each_newline() -> None:
    form = prm_format("embedded")
    assert form.text("question: 3+4\n", ["3+4=7", "answer: 7"]) == "question: 3+4\n3+4=7<step>answer: 7<step>"
    assert form.score([0.3, 0.7]) == 0.7


def test_a_step_tag_setting_overrides_the_familys() -> None:
    assert prm_format("math-shepherd", "<tag>").text("q", ["a"]) == "q a <tag>"
