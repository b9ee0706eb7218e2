"""How a generator checks one step of its own solution, and where a deployment learns it.

A generator trained with a check form (``ttc-serve train checker``) re-derives a step's result from
the step's expression alone: ``check 114+38=`` → ``251`` (152 written least significant digit first).
A check-and-repair revision (``router/strategies/check_repair.py``) checks each step of an attempt
this way, cuts the attempt at the first step whose written result differs from its check, writes the
check's result there and lets the generator go on. Like the revise prompt layout, the form belongs
to the checkpoint: the embedded generator names it in ``tokenizer_config.json`` (``check_template``,
``check_step_pattern``, ``check_digits``); a checkpoint that names none has no check form, and its
revisions use the revise prompt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ttc_serve.models.tokenizer_config import read_tokenizer_config

EXPRESSION = "{expression}"
DIGITS = ("reversed", "as_written")


@dataclass(frozen=True)
class CheckedStep:
    text: str
    expression: str
    written: int  # the result the step states
    result_span: tuple[int, int]  # where in ``text`` it is written

    def repaired(self, value: int) -> str:
        """The step with ``value`` in place of the written result."""
        start, end = self.result_span
        return self.text[:start] + str(value) + self.text[end:]


@dataclass(frozen=True)
class CheckFormat:
    # the steps that can be checked: an expression, "=", an integer result
    step_pattern: str = r"^(?P<expression>-?\d+[+-]\d+)=(?P<result>-?\d+)$"
    template: str = "check {expression}="
    digits: Literal["reversed", "as_written"] = "reversed"  # how the check writes its result
    max_tokens: int = 12  # a check's answer: a sign, the digits, the newline that ends it
    stop: str = "\n"

    def __post_init__(self) -> None:
        if self.template.count(EXPRESSION) != 1:
            raise ValueError(f"a check template must contain {EXPRESSION} exactly once: {self.template!r}")
        if self.digits not in DIGITS:
            raise ValueError(f"check_digits must be one of {DIGITS}, not {self.digits!r}")
        groups = re.compile(self.step_pattern).groupindex
        if not {"expression", "result"} <= groups.keys():
            raise ValueError("a check step pattern needs the named groups 'expression' and 'result'")

    def parse_step(self, step: str) -> CheckedStep | None:
        """The step's expression and written result, or None where the step is not checkable."""
        match = re.match(self.step_pattern, step)
        if match is None:
            return None
        return CheckedStep(step, match["expression"], int(match["result"]), match.span("result"))

    def prompt(self, expression: str) -> str:
        return self.template.replace(EXPRESSION, expression)

    def write(self, value: int) -> str:
        """``value`` as the check writes it: 152 → ``251`` (reversed), -229 → ``-922``."""
        digits = str(abs(value))
        return ("-" if value < 0 else "") + (digits[::-1] if self.digits == "reversed" else digits)

    def read(self, text: str) -> int | None:
        """The value a check's completion states, or None where it states none."""
        body = text.strip()
        digits = body.removeprefix("-")
        if not digits.isdigit():
            return None
        value = int(digits[::-1] if self.digits == "reversed" else digits)
        return -value if body.startswith("-") else value

    def to_tokenizer_config(self) -> dict[str, str]:
        return {"check_template": self.template, "check_step_pattern": self.step_pattern,
                "check_digits": self.digits}

    @classmethod
    def from_model_dir(cls, model_dir: Path) -> CheckFormat | None:
        """The checkpoint's own check form, or None where it names none."""
        config = read_tokenizer_config(model_dir)
        if "check_template" not in config:
            return None
        digits = config.get("check_digits", "reversed")
        if digits not in DIGITS:
            raise ValueError(f"{model_dir}: check_digits must be one of {DIGITS}, not {digits!r}")
        return cls(step_pattern=config.get("check_step_pattern", cls.step_pattern),
                   template=config["check_template"], digits=digits)
