"""The one async protocol every test-time strategy implements, and the types it trades in."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from ttc_serve.models.check_format import CheckFormat
from ttc_serve.models.protocols import GenerationRequest, TokenLogprob
from ttc_serve.models.revision_format import RevisionFormat
from ttc_serve.router.budget import Meter
from ttc_serve.router.progress import Progress
from ttc_serve.router.selection import Aggregation, AnswerMatch


@dataclass(frozen=True)
class SamplingConfig:
    temperature: float = 0.8
    top_p: float = 1.0
    max_tokens: int = 128
    seed: int | None = None
    step_delimiter: str = "\n"
    max_samples_per_call: int = 256
    max_waves: int = 6  # sampling rounds used to spend what the first, worst-case-sized one left
    answer_match: AnswerMatch = "exact"  # how votes compare final answers
    # the request's own sampling options, applied to every sample that can become its answer
    stop: tuple[str, ...] = ()
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    logit_bias: Mapping[str, float] | None = None
    logprobs: int | None = None  # None: no logprobs; k: each token's and the k most likely

    def request(self, prompts: Sequence[str], n: int, *, max_tokens: int | None = None,
                stop: Sequence[str] = (), seed: int | None = None, greedy: bool = False) -> GenerationRequest:
        """A generate call for answer text: the request's options, plus a strategy's own stops
        (a step delimiter)."""
        return GenerationRequest(
            prompts=list(prompts), n=n, max_tokens=self.max_tokens if max_tokens is None else max_tokens,
            temperature=0.0 if greedy else self.temperature, top_p=self.top_p,
            stop=[*stop, *self.stop] or None, seed=seed, frequency_penalty=self.frequency_penalty,
            presence_penalty=self.presence_penalty, logit_bias=self.logit_bias, logprobs=self.logprobs)


@dataclass
class Candidate:
    """One complete sample: its text, parsed answer and (when scored) PRM step scores."""

    text: str
    finish_reason: str  # the backend's: "stop" | "length"
    tokens: int
    answer: str | None
    steps: list[str]
    step_scores: list[float] | None = None
    score: float | None = None
    repaired_at: int | None = None  # check-and-repair: the step its revision rewrote
    # the sampled tokens' logprobs, when the request asked (None for text the router wrote: repairs)
    logprobs: tuple[TokenLogprob, ...] | None = None

    def choice(self) -> Choice:
        return Choice(self.text, self.finish_reason, self.answer, self.tokens, self.logprobs)

    def trace(self) -> dict[str, Any]:
        trace = {"text": self.text, "answer": self.answer, "score": self.score,
                 "step_scores": self.step_scores, "tokens": self.tokens}
        return trace if self.repaired_at is None else {**trace, "repaired_at": self.repaired_at}


@dataclass
class StrategyContext:
    prompt: str
    prompt_tokens: int  # as the generator counts them
    meter: Meter
    question: str  # what the verifier is shown as the question (the prompt, or the user's message)
    sampling: SamplingConfig
    reuse: list[Candidate] = field(default_factory=list)  # samples already paid for (difficulty)
    # how the generator was trained to see its earlier attempts
    revision: RevisionFormat = field(default_factory=RevisionFormat)
    # how the generator checks a step of its own (None: it has no check form)
    check: CheckFormat | None = None
    progress: Progress | None = None  # None: nobody listens

    def report(self, leading_answer: str | None) -> None:
        """The end of a backend round (for streaming clients)."""
        if self.progress is not None:
            self.progress.report(leading_answer)


@dataclass(frozen=True)
class Choice:
    """One answer the strategy offers: its text as sampled, why it ended, its final answer."""

    text: str
    finish_reason: str  # the OpenAI choice's: "stop" | "length"
    answer: str | None
    tokens: int  # generated tokens of its text
    logprobs: tuple[TokenLogprob, ...] | None = None


@dataclass
class StrategyResult:
    # the strategy's answers best first, one per distinct final answer (the first is its choice)
    choices: list[Choice]
    compute_finish_reason: str  # compute.finish_reason: "answered" | "no_answer" | "budget_exhausted"
    params: dict[str, Any]
    samples: int
    trace: list[dict[str, Any]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return self.choices[0].text

    @property
    def answer(self) -> str | None:
        return self.choices[0].answer

    @property
    def choice_finish_reason(self) -> str:
        return self.choices[0].finish_reason


class StrategyParams(BaseModel):
    """Base for each strategy's ``strategy_params``: unknown keys are an error, numbers are bounded."""

    model_config = ConfigDict(extra="forbid")

    aggregation: Aggregation = "last"


class Strategy(Protocol):
    name: str
    params_model: type[StrategyParams]

    def min_flops(self, ctx: StrategyContext, params: StrategyParams) -> float:
        """The cost of the cheapest complete run (one sample, scored if the strategy scores)."""
        ...

    def scores(self, params: StrategyParams) -> bool:
        """Whether this run needs the verifier (PRM scores)."""
        ...

    async def run(self, ctx: StrategyContext, params: StrategyParams) -> StrategyResult: ...


def parse_params(strategy: Strategy, raw: Mapping[str, Any] | None) -> StrategyParams:
    """Validate ``strategy_params``; raises pydantic.ValidationError on bad input."""
    return strategy.params_model.model_validate(dict(raw or {}))
