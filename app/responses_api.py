"""OpenAI's Responses API (``/v1/responses``) for text in and text out, plain and streaming, on the
same engine as chat completions: the input becomes a conversation, the conversation a prompt by the
generator's chat template. Nothing is stored: ``previous_response_id`` and ``conversation`` are
refused, as are tools that would be called and non-text formats."""

from __future__ import annotations

import json
import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sse_starlette import ServerSentEvent

from ttc_serve.app.openai_format import chat_logprobs, progress
from ttc_serve.app.protocol import Extensions, Metadata
from ttc_serve.app.serving import Ask, compute
from ttc_serve.app.settings import ReasoningEffort
from ttc_serve.router.engine import EngineResult
from ttc_serve.router.progress import ProgressEvent

TEXT_PARTS = ("input_text", "output_text", "text")


class InputPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str = Field(max_length=64)
    text: str | None = Field(None, max_length=1_000_000)


class InputMessage(BaseModel):
    model_config = ConfigDict(extra="allow")  # other item types are refused by name below

    type: str = Field("message", max_length=64)
    role: Literal["user", "system", "developer", "assistant"] | None = None
    content: Annotated[str, Field(max_length=1_000_000)] | Annotated[
        list[InputPart], Field(max_length=256)] | None = None


class Reasoning(BaseModel):
    model_config = ConfigDict(extra="forbid")

    effort: ReasoningEffort | None = None
    summary: str | None = None
    generate_summary: str | None = None


class ResponsesRequest(Extensions):
    model: str = Field(max_length=256)
    input: Annotated[str, Field(min_length=1, max_length=1_000_000)] | Annotated[
        list[InputMessage], Field(min_length=1, max_length=1024)]
    instructions: str | None = Field(None, max_length=1_000_000)
    max_output_tokens: int | None = Field(None, ge=1, le=1_048_576)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_logprobs: int | None = Field(None, ge=0, le=20)
    reasoning: Reasoning | None = None
    stream: bool | None = False
    stream_options: dict[str, Any] | None = None
    text: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    max_tool_calls: int | None = None
    metadata: Metadata | None = None
    store: bool | None = None
    user: str | None = Field(None, max_length=256)
    service_tier: str | None = Field(None, max_length=64)
    truncation: Literal["auto", "disabled"] | None = None
    include: list[str] | None = None
    background: bool | None = None
    background_options: dict[str, Any] | None = None
    previous_response_id: str | None = None
    conversation: str | dict[str, Any] | None = None
    prompt: dict[str, Any] | None = None
    context_management: list[dict[str, Any]] | None = None
    prompt_cache_key: str | None = Field(None, max_length=1024)
    prompt_cache_retention: str | None = Field(None, max_length=64)
    prompt_cache_options: dict[str, Any] | None = None
    safety_identifier: str | None = Field(None, max_length=256)
    moderation: dict[str, Any] | None = None
    access_programs: Any = None
    image: Any = None

    def unsupported(self) -> tuple[str, str] | None:
        if self.previous_response_id or self.conversation:
            field = "previous_response_id" if self.previous_response_id else "conversation"
            return field, "this service stores no responses: send the whole conversation as input"
        if self.background:
            return "background", "responses run in the foreground only"
        if self.prompt is not None:
            return "prompt", "stored prompt templates are not supported"
        if self.tools and self.tool_choice not in (None, "none"):
            return "tool_choice", "this service answers with text only and calls no tools"
        text_format = (self.text or {}).get("format") or {"type": "text"}
        if text_format.get("type") != "text":
            return "text.format", "only the text format is supported (no JSON schema)"
        if self.moderation is not None:
            return "moderation", "this service runs no moderation"
        if self.image is not None:
            return "image", "image output is not supported"
        for i, item in enumerate(self.input if isinstance(self.input, list) else []):
            if item.type != "message" or item.role is None:
                return f"input.{i}.type", f"only message items are supported, not {item.type!r}"
            for j, part in enumerate(item.content if isinstance(item.content, list) else []):
                if part.type not in TEXT_PARTS or part.text is None:
                    return f"input.{i}.content.{j}.type", f"only text parts are supported, not {part.type!r}"
        return None

    def messages(self) -> list[dict[str, str]]:
        """The conversation as a chat template reads it (instructions first, as the system)."""
        messages = [{"role": "system", "content": self.instructions}] if self.instructions else []
        if isinstance(self.input, str):
            return [*messages, {"role": "user", "content": self.input}]
        for item in self.input:
            content = item.content
            text = content if isinstance(content, str) else "".join(p.text or "" for p in content or [])
            messages.append({"role": "system" if item.role == "developer" else str(item.role),
                             "content": text})
        return messages

    def ask(self, prompt: str, question: str | None) -> Ask:
        return Ask(model=self.model, prompt=prompt, question=question, max_tokens=self.max_output_tokens,
                   temperature=self.temperature, top_p=self.top_p,
                   logprobs=self.top_logprobs, flops_budget=self.flops_budget,
                   reasoning_effort=self.reasoning.effort if self.reasoning else None,
                   strategy=self.strategy, strategy_params=self.strategy_params,
                   return_trace=self.return_trace)


class ResponseObject:
    """The response object, as it grows: in progress, then complete (or incomplete at the length
    limit)."""

    def __init__(self, body: ResponsesRequest, ask: Ask):
        self.body, self.ask = body, ask
        self.id, self.created_at = f"resp_{uuid.uuid4().hex}", int(time.time())
        self.message_id = f"msg_{uuid.uuid4().hex}"

    def shell(self, status: str) -> dict[str, Any]:
        body = self.body
        return {
            "id": self.id, "object": "response", "created_at": self.created_at, "status": status,
            "model": body.model, "output": [], "error": None, "incomplete_details": None,
            "instructions": body.instructions, "max_output_tokens": body.max_output_tokens,
            "metadata": body.metadata or {}, "parallel_tool_calls": False, "temperature": body.temperature,
            "top_p": body.top_p, "tool_choice": "none", "tools": [], "store": False,
            "text": {"format": {"type": "text"}}, "truncation": body.truncation or "disabled",
            "reasoning": {"effort": self.ask.reasoning_effort, "summary": None}, "usage": None}

    def text_part(self, outcome: EngineResult) -> dict[str, Any]:
        choice = outcome.result.choices[0]
        logprobs = chat_logprobs(choice, self.body.top_logprobs or 0)
        return {"type": "output_text", "text": choice.text, "annotations": [],
                "logprobs": [] if logprobs is None else [t.model_dump() for t in logprobs.content or []]}

    def message(self, outcome: EngineResult | None) -> dict[str, Any]:
        return {"type": "message", "id": self.message_id, "role": "assistant",
                "status": "in_progress" if outcome is None else "completed",
                "content": [] if outcome is None else [self.text_part(outcome)]}

    def complete(self, outcome: EngineResult) -> dict[str, Any]:
        truncated = outcome.result.choice_finish_reason == "length"
        generated, prompt = outcome.ledger.generated_tokens, outcome.prompt_tokens
        first = outcome.result.choices[0].tokens
        return {**self.shell("incomplete" if truncated else "completed"),
                "incomplete_details": {"reason": "max_output_tokens"} if truncated else None,
                "output": [self.message(outcome)],
                "usage": {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": 0},
                          "output_tokens": generated,
                          "output_tokens_details": {"reasoning_tokens": max(0, generated - first)},
                          "total_tokens": prompt + generated},
                "compute": compute(outcome, self.ask).model_dump()}


class ResponseEvents:
    """The Responses stream: named events, each with a ``type`` and a ``sequence_number``; progress
    rides on ``response.in_progress`` events (their ``progress`` field), once per backend round."""

    def __init__(self, response: ResponseObject):
        self.response = response
        self.sequence = 0

    def event(self, type_: str, **fields: Any) -> ServerSentEvent:
        payload = {"type": type_, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return ServerSentEvent(json.dumps(payload, separators=(",", ":")), event=type_)

    def opening(self) -> list[ServerSentEvent]:
        return [self.event("response.created", response=self.response.shell("in_progress"))]

    def progress(self, event: ProgressEvent) -> list[ServerSentEvent]:
        return [self.event("response.in_progress", response=self.response.shell("in_progress"),
                           progress=progress(event))]

    def final(self, outcome: EngineResult) -> list[ServerSentEvent]:
        r = self.response
        where = {"item_id": r.message_id, "output_index": 0, "content_index": 0}
        part = r.text_part(outcome)
        empty = {**part, "text": "", "logprobs": []}
        done = r.complete(outcome)
        return [
            self.event("response.output_item.added", output_index=0, item=r.message(None)),
            self.event("response.content_part.added", **where, part=empty),
            self.event("response.output_text.delta", **where, delta=part["text"], logprobs=part["logprobs"]),
            self.event("response.output_text.done", **where, text=part["text"], logprobs=part["logprobs"]),
            self.event("response.content_part.done", **where, part=part),
            self.event("response.output_item.done", output_index=0, item=r.message(outcome)),
            self.event("response.incomplete" if done["status"] == "incomplete" else "response.completed",
                       response=done)]

    def error(self, body: dict[str, Any]) -> list[ServerSentEvent]:
        error = body["error"]
        return [self.event("error", code=error.get("code"), message=error.get("message"),
                           param=error.get("param"))]

    def closing(self) -> list[ServerSentEvent]:
        return []
