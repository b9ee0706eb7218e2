"""How a process reward model wants a solution shown, and which of its outputs is the step score.

A PRM served by vLLM's pooling runner with STEP pooling returns, at every step-tag token of its
input, a pair of probabilities; which text carries the tags, and which entry of the pair means "this
step is good", is the PRM's own convention. Each adapter here is one model family's, as its model
card gives it; ``TTC_PRM_FORMAT`` picks one.

- ``embedded``: the question as the generator saw it, each step followed by the tag (``<step>``) in
  place of its newline; pairs are ``[p_bad, p_good]``.
- ``qwen2.5-math-prm`` (Qwen2.5-Math-PRM-7B/72B): the question in Qwen's chat layout under the
  card's system prompt, the steps as the assistant turn, each ended by ``<extra_0>``; served by
  vLLM's ``Qwen2ForProcessRewardModel`` (STEP pooling on ``<extra_0>``), pairs ``[p_bad, p_good]``.
- ``math-shepherd`` (math-shepherd-mistral-7b-prm): ``question + " " + steps``, each step ended by
  `` ки`` and the steps joined by newlines; the model is a causal LM whose score at a tag is the
  probability of ``+`` against ``-``, served as a STEP pooler with ``returned_token_ids`` set to
  the ids of ``+`` and ``-`` (in that order), so pairs are ``[p(+), p(-)]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

PrmFormatName = Literal["embedded", "qwen2.5-math-prm", "math-shepherd"]

QWEN_MATH_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."


@dataclass(frozen=True)
class PrmFormat:
    name: PrmFormatName = "embedded"
    step_tag: str = "<step>"
    good_index: int = 1  # which entry of a tag's pair is P(step is good)
    system_prompt: str = QWEN_MATH_SYSTEM  # qwen2.5-math-prm only

    @property
    def reads_generator_prompt(self) -> bool:
        """The embedded PRM reads the text exactly as the generator saw it; the others want the
        question alone (a chat request's last user message), in their own layout."""
        return self.name == "embedded"

    def text(self, question: str, steps: Sequence[str]) -> str:
        """The PRM's input for a solution to ``question``: one step tag after each step."""
        if self.name == "qwen2.5-math-prm":
            answer = "".join(f"{step}{self.step_tag}" for step in steps)
            return (f"<|im_start|>system\n{self.system_prompt}<|im_end|>\n"
                    f"<|im_start|>user\n{question}<|im_end|>\n"
                    f"<|im_start|>assistant\n{answer}<|im_end|>\n")
        if self.name == "math-shepherd":
            return f"{question} " + "\n".join(f"{step} {self.step_tag}" for step in steps)
        # the tag takes the place of the step's newline; the embedded PRM embeds its tag as one
        return question + "".join(f"{step}{self.step_tag}" for step in steps)

    def score(self, pair: Sequence[float]) -> float:
        return float(pair[self.good_index])


# each family's step tag and the index of "good" in its pairs
FORMATS: dict[PrmFormatName, PrmFormat] = {
    "embedded": PrmFormat("embedded", "<step>", 1),
    "qwen2.5-math-prm": PrmFormat("qwen2.5-math-prm", "<extra_0>", 1),
    "math-shepherd": PrmFormat("math-shepherd", "ки", 0),
}


def prm_format(name: PrmFormatName, step_tag: str | None = None) -> PrmFormat:
    """The named format, with another step tag if one is set."""
    base = FORMATS[name]
    return base if step_tag is None else PrmFormat(base.name, step_tag, base.good_index, base.system_prompt)
