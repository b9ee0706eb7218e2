"""The HTTP contract: OpenAI-compatible requests and responses plus the ``compute`` extension."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

FLOPS_LIMIT = 1e30  # schema bound; the deployment's own cap is TTC_MAX_FLOPS_BUDGET


class _Request(BaseModel):
    # Unknown fields are refused so that a misspelt extension (flops_budjet) is not silently ignored.
    model_config = ConfigDict(extra="forbid")

    model: str = Field(max_length=256)
    max_tokens: int | None = Field(None, ge=1, le=1_048_576)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=1, description="one choice: the answer the strategy selected")
    stream: Literal[False] = Field(False, description="the answer is known only when the search ends")
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    user: str | None = Field(None, max_length=256)
    # Extensions (the openai client sends them via extra_body)
    flops_budget: float | None = Field(None, gt=0.0, le=FLOPS_LIMIT, allow_inf_nan=False,
                                       description="inference FLOPs this request may spend")
    strategy: str = Field("auto", max_length=64)
    strategy_params: dict[str, Any] | None = None
    return_trace: bool = False


class CompletionRequest(_Request):
    prompt: Annotated[str, Field(min_length=1)] | Annotated[
        list[Annotated[str, Field(min_length=1)]],
        Field(min_length=1, max_length=1, description="one prompt per request")]

    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=1_000_000)


class ChatCompletionRequest(_Request):
    messages: list[ChatMessage] = Field(min_length=1, max_length=256)


class DifficultyInfo(BaseModel):
    score: float
    bin: int
    samples: int


class Compute(BaseModel):
    strategy: str
    params: dict[str, Any]
    difficulty: DifficultyInfo | None
    flops_budget: float
    flops_used: float
    flops: dict[str, float]
    samples: int
    finish_reason: str
    generated_tokens: int
    scored_tokens: int
    backend_calls: dict[str, int]
    budget_source: str = Field(description="what set flops_budget: 'request' or 'default'")
    sampling: dict[str, Any] = Field(
        description="as the samples were drawn: temperature, top_p, seed, max_tokens (after fitting "
                    "the context; a greedy request searches at the deployment's temperature)")
    trace: list[dict[str, Any]] | None = None
    calls: list[dict[str, Any]] | None = None  # with return_trace: usage and FLOPs of each backend call


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    logprobs: None = None
    finish_reason: str


class ChatChoiceMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: ChatChoiceMessage
    logprobs: None = None
    finish_reason: str


def _now() -> int:
    return int(time.time())


class CompletionResponse(BaseModel):
    id: str = Field(default_factory=lambda: f"cmpl-{uuid.uuid4().hex}")
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=_now)
    model: str
    choices: list[CompletionChoice]
    usage: Usage
    compute: Compute


class ChatCompletionResponse(BaseModel):
    id: str = Field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=_now)
    model: str
    choices: list[ChatChoice]
    usage: Usage
    compute: Compute


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=_now)
    owned_by: str = "ttc-serve"
    max_model_len: int


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail
