"""What the router needs from models: a ``Generator`` and a ``Verifier`` (PRM), backend-agnostic."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Usage:
    """Token counts as the backend reported them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0  # prompt tokens served from the prefix cache (not recomputed)

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.prompt_tokens + other.prompt_tokens,
                     self.completion_tokens + other.completion_tokens,
                     self.cached_prompt_tokens + other.cached_prompt_tokens)

    @property
    def computed_prompt_tokens(self) -> int:
        return self.prompt_tokens - self.cached_prompt_tokens


@dataclass(frozen=True)
class TokenLogprob:
    """One sampled token as the backend reported it: its text, log-probability and the most likely
    alternatives at that position."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str  # "stop" | "length"
    tokens: int  # generated tokens of this completion
    logprobs: tuple[TokenLogprob, ...] | None = None  # when the request asked for them


@dataclass(frozen=True)
class GenerationRequest:
    prompts: Sequence[str]
    n: int = 1
    max_tokens: int = 128
    temperature: float = 0.8
    top_p: float = 1.0
    stop: Sequence[str] | None = None
    seed: int | None = None
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    logit_bias: Mapping[str, float] | None = None  # token id -> bias
    logprobs: int | None = None  # None: none; k: each token's logprob and the k most likely

    def options(self) -> dict[str, object]:
        """The options set away from their defaults, by their OpenAI names (the generate call
        sends them, the trace shows them); stop and seed are left to each."""
        options: dict[str, object] = {}
        if self.frequency_penalty:
            options["frequency_penalty"] = self.frequency_penalty
        if self.presence_penalty:
            options["presence_penalty"] = self.presence_penalty
        if self.logit_bias:
            options["logit_bias"] = dict(self.logit_bias)
        if self.logprobs is not None:
            options["logprobs"] = self.logprobs
        return options


@dataclass(frozen=True)
class GenerationResult:
    completions: list[list[Completion]]  # [prompt][sample]
    usage: Usage
    prompt_tokens: list[int]  # per prompt, as the backend counted them
    cached_tokens: list[int]  # per prompt, prefix-cache hits the backend reported (0 if unknown)


class Generator(Protocol):
    name: str
    max_model_len: int

    async def generate(self, request: GenerationRequest) -> GenerationResult: ...

    async def count_tokens(self, prompt: str) -> int: ...


@dataclass(frozen=True)
class VerifierResult:
    step_scores: list[list[float]]  # [input][step] probability that the step prefix is good
    usage: Usage
    input_tokens: list[int]  # per input, as the backend counted them


class Verifier(Protocol):
    name: str
    max_model_len: int
    # True when the verifier tokenizes as the generator does, so that a PRM input's tokens are bounded
    # by the generator's counts; else they are counted by the verifier's tokenizer before scoring
    shares_generator_tokenizer: bool

    async def score(self, prompts: Sequence[str], solutions: Sequence[Sequence[str]]) -> VerifierResult:
        """Score each solution (a list of steps) to its prompt; one score per step."""
        ...

    async def count_inputs(self, prompts: Sequence[str], solutions: Sequence[Sequence[str]]) -> list[int]:
        """Each PRM input's tokens, as the verifier will count them when scoring (no FLOPs)."""
        ...


def prm_text(prompt: str, steps: Sequence[str], step_tag: str) -> str:
    """The embedded PRM's input: the prompt, then each step ended by the step tag in place of its
    newline (the embedded PRM embeds its tag as a newline, so that its body reads the text exactly as
    the generator wrote it). Other PRMs' layouts: ``models/prm_format.py``."""
    return prompt + "".join(f"{step}{step_tag}" for step in steps)
