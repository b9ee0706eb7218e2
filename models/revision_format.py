"""How a generator sees its earlier attempts in a revise prompt, and where a deployment learns it.

A reviser is trained on one layout of question and attempts, and answers worse in any other, so the
layout belongs to the checkpoint, as a chat template does: the embedded generators carry it in
``tokenizer_config.json`` (``revision_template``, ``revision_attempt_prefix``); a deployment may set
its own (``TTC_REVISION_TEMPLATE``), and a checkpoint that names none gets the question-first layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ttc_serve.models.tokenizer_config import read_tokenizer_config

PROMPT, ATTEMPTS = "{prompt}", "{attempts}"


def validate_revision_template(template: str) -> str:
    """A template names ``{prompt}`` and ``{attempts}`` once each (other text is literal)."""
    for field in (PROMPT, ATTEMPTS):
        if template.count(field) != 1:
            raise ValueError(f"a revision template must contain {field} exactly once: {template!r}")
    return template


@dataclass(frozen=True)
class RevisionFormat:
    template: str = "{prompt}{attempts}revision:\n"
    attempt_prefix: str = "attempt:\n"

    def __post_init__(self) -> None:
        validate_revision_template(self.template)

    def render(self, prompt: str, attempts: Sequence[Sequence[str]]) -> str:
        """The revise prompt for ``prompt`` and its earlier attempts, each given as its steps."""
        shown = "".join(self.attempt_prefix + "".join(step + "\n" for step in steps)
                        for steps in attempts)
        # Filled in one pass, so that a prompt or an attempt holding "{attempts}" stays as written.
        first, second = sorted((PROMPT, ATTEMPTS), key=self.template.index)
        head, rest = self.template.split(first)
        middle, tail = rest.split(second)
        values = {PROMPT: prompt, ATTEMPTS: shown}
        return head + values[first] + middle + values[second] + tail

    def to_tokenizer_config(self) -> dict[str, str]:
        return {"revision_template": self.template, "revision_attempt_prefix": self.attempt_prefix}

    @classmethod
    def from_model_dir(cls, model_dir: Path) -> RevisionFormat | None:
        """The checkpoint's own layout, or None where it names none."""
        config = read_tokenizer_config(model_dir)
        if "revision_template" not in config:
            return None
        return cls(config["revision_template"],
                   config.get("revision_attempt_prefix", cls.attempt_prefix))
