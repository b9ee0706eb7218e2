"""The HTTP contract: OpenAI's completions and chat-completions requests and responses, plus the
``compute`` extension. Every field OpenAI's requests have is accepted; what it does here is in
docs/api.md, and what this service cannot do is refused by ``unsupported()`` with the field named.
The Responses API is in ``app/responses_protocol.py``."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ttc_serve.app.settings import ReasoningEffort

FLOPS_LIMIT = 1e30  # schema bound; the deployment's own cap is TTC_MAX_FLOPS_BUDGET
MAX_CHOICES = 16
StopString = Annotated[str, Field(min_length=1, max_length=256)]
TokenId = Annotated[str, Field(pattern=r"^[0-9]{1,9}$")]
Bias = Annotated[float, Field(ge=-100, le=100)]
Metadata = dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_usage: bool | None = Field(None, description="a last chunk with usage and compute")
    include_obfuscation: bool | None = Field(None, description="accepted; no effect (no padding sent)")


class Extensions(BaseModel):
    """ttc-serve's own request fields (the openai client sends them through ``extra_body``)."""

    # Unknown fields are refused so that a misspelt extension (flops_budjet) is not silently ignored.
    model_config = ConfigDict(extra="forbid")

    flops_budget: float | None = Field(None, gt=0.0, le=FLOPS_LIMIT, allow_inf_nan=False,
                                       description="inference FLOPs this request may spend")
    strategy: str = Field("auto", max_length=64)
    strategy_params: dict[str, Any] | None = None
    return_trace: bool = False


class _Request(Extensions):
    model: str = Field(max_length=256)
    max_tokens: int | None = Field(None, ge=1, le=1_048_576)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    n: int | None = Field(1, ge=1, le=MAX_CHOICES, description=(
        "the n best distinct final answers, best first; fewer when the search found fewer"))
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    stop: StopString | Annotated[list[StopString], Field(max_length=4)] | None = None
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    logit_bias: Annotated[dict[TokenId, Bias], Field(max_length=300)] | None = None
    user: str | None = Field(None, max_length=256)
    reasoning_effort: ReasoningEffort | None = Field(
        None, description="sets the FLOPs budget from the deployment's table (flops_budget wins)")

    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    def choices_wanted(self) -> int:
        return self.n or 1

    def completion_limit(self) -> int | None:
        return self.max_tokens

    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def unsupported(self) -> tuple[str, str] | None:
        """(field, why) for a field set to something this service cannot do."""
        return None


class CompletionRequest(_Request):
    prompt: Annotated[str, Field(min_length=1)] | Annotated[
        list[Annotated[str, Field(min_length=1)]],
        Field(min_length=1, max_length=1, description="one prompt per request")]
    echo: bool | None = Field(False, description="the prompt before the completion's text")
    logprobs: int | None = Field(None, ge=0, le=5, description="the chosen text's tokens, each with "
                                 "its logprob and the k most likely")
    suffix: str | None = None
    best_of: int | None = Field(None, ge=1, le=MAX_CHOICES)

    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    def logprobs_wanted(self) -> int | None:
        return self.logprobs

    def unsupported(self) -> tuple[str, str] | None:
        if self.suffix:
            return "suffix", "insertion (a suffix after the completion) is not supported by this service"
        if self.best_of not in (None, 1):
            return "best_of", ("the strategy decides how many samples to draw from the FLOPs budget; "
                               "set flops_budget or reasoning_effort instead")
        if self.echo and self.logprobs is not None:
            return "echo", "echo with logprobs (the prompt's own logprobs) is not supported"
        return None


class ContentPart(BaseModel):
    """A part of a chat message's content; only text parts can be served (others are refused with
    their type named)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(max_length=64)
    text: str | None = Field(None, max_length=1_000_000)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: Annotated[str, Field(max_length=1_000_000)] | Annotated[
        list[ContentPart], Field(max_length=256)] | None = None
    name: str | None = Field(None, max_length=256)
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    function_call: dict[str, Any] | None = None
    refusal: str | None = None
    audio: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _has_content(self) -> ChatMessage:
        if self.content is None and self.role in ("system", "developer", "user"):
            raise ValueError(f"a {self.role} message needs content")
        return self


class ChatCompletionRequest(_Request):
    messages: list[ChatMessage] = Field(min_length=1, max_length=1024)
    max_completion_tokens: int | None = Field(None, ge=1, le=1_048_576)
    logprobs: bool | None = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    functions: list[dict[str, Any]] | None = None
    function_call: str | dict[str, Any] | None = None
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None
    metadata: Metadata | None = None
    store: bool | None = None
    service_tier: str | None = Field(None, max_length=64)
    verbosity: Literal["low", "medium", "high"] | None = None
    web_search_options: dict[str, Any] | None = None
    moderation: dict[str, Any] | None = None
    prompt_cache_key: str | None = Field(None, max_length=1024)
    prompt_cache_retention: str | None = Field(None, max_length=64)
    prompt_cache_options: dict[str, Any] | None = None
    safety_identifier: str | None = Field(None, max_length=256)

    def completion_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def logprobs_wanted(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None

    def unsupported(self) -> tuple[str, str] | None:
        no_tools = "this service answers with text only and calls no tools"
        if self.tools and self.tool_choice not in (None, "none"):
            return "tool_choice", f"{no_tools}: send tool_choice 'none' or no tools"
        if self.functions and self.function_call not in (None, "none"):
            return "function_call", f"{no_tools}: send function_call 'none' or no functions"
        if self.response_format and self.response_format.get("type") != "text":
            return "response_format", "only the text response format is supported (no JSON modes)"
        if self.modalities and set(self.modalities) != {"text"}:
            return "modalities", "only text output is supported"
        if self.audio is not None:
            return "audio", "audio output is not supported"
        if self.web_search_options is not None:
            return "web_search_options", "this service does not search the web"
        if self.moderation is not None:
            return "moderation", "this service runs no moderation"
        for i, message in enumerate(self.messages):
            if message.role in ("tool", "function") or message.tool_calls or message.function_call:
                return f"messages.{i}.role", f"{no_tools}: messages with tool calls or results"
            if message.audio is not None:
                return f"messages.{i}.audio", "audio is not supported"
            for j, part in enumerate(message.content if isinstance(message.content, list) else []):
                if part.type != "text" or part.text is None:
                    return (f"messages.{i}.content.{j}.type",
                            f"only text content parts are supported, not {part.type!r}")
        return None

    def template_messages(self) -> list[dict[str, str]]:
        """The conversation as a chat template reads it: text content, ``developer`` as the system
        role that templates know, ``name`` kept for templates that use it."""
        messages = []
        for message in self.messages:
            content = message.content
            text = content if isinstance(content, str) else "".join(p.text or "" for p in content or [])
            role = "system" if message.role == "developer" else message.role
            named = {"name": message.name} if message.name else {}
            messages.append({"role": role, "content": text, **named})
        return messages


class DifficultyInfo(BaseModel):
    score: float
    bin: int
    samples: int


class Progress(BaseModel):
    """Streaming: what the request has done so far (one event per backend round)."""

    stage: str = Field(description="'difficulty' while the difficulty is estimated, then the strategy")
    round: int = Field(description="rounds done in this stage (0: it starts)")
    flops_used: float
    samples: int = Field(description="completions drawn so far")
    leading_answer: str | None = Field(description="the answer that would win if the search stopped now")


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
    budget_source: str = Field(
        description="what set flops_budget: 'request' (flops_budget), 'reasoning_effort' or 'default'")
    sampling: dict[str, Any] = Field(
        description="as the samples were drawn: temperature, top_p, seed, max_tokens (after fitting "
                    "the context; a greedy request searches at the deployment's temperature)")
    trace: list[dict[str, Any]] | None = None
    calls: list[dict[str, Any]] | None = None  # with return_trace: usage and FLOPs of each backend call


class CompletionTokensDetails(BaseModel):
    reasoning_tokens: int = Field(description="generated tokens beyond the first choice's own text: "
                                  "the search's other samples")


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int = Field(description="every token the strategy generated")
    total_tokens: int
    completion_tokens_details: CompletionTokensDetails | None = None


class CompletionLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: str | None


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprobOut(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChatLogprobs(BaseModel):
    content: list[TokenLogprobOut] | None
    refusal: None = None


class ChatChoiceMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: ChatChoiceMessage
    logprobs: ChatLogprobs | None = None
    finish_reason: str


def now() -> int:
    return int(time.time())


def completion_id() -> str:
    return f"cmpl-{uuid.uuid4().hex}"


def chat_completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


class CompletionResponse(BaseModel):
    id: str = Field(default_factory=completion_id)
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=now)
    model: str
    choices: list[CompletionChoice]
    usage: Usage
    compute: Compute


class ChatCompletionResponse(BaseModel):
    id: str = Field(default_factory=chat_completion_id)
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=now)
    model: str
    choices: list[ChatChoice]
    usage: Usage
    compute: Compute


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=now)
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
