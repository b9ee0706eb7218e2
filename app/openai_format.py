"""Completions and chat completions: a request as an ``Ask``, an engine result as OpenAI's response,
or as the chunks of its stream."""

from __future__ import annotations

import abc
from typing import Any

from ttc_serve.app.protocol import (
    ChatChoice,
    ChatChoiceMessage,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatLogprobs,
    CompletionChoice,
    CompletionLogprobs,
    CompletionRequest,
    CompletionResponse,
    CompletionTokensDetails,
    Progress,
    TokenLogprobOut,
    TopLogprob,
    Usage,
    chat_completion_id,
    completion_id,
    now,
)
from ttc_serve.app.serving import Ask, compute
from ttc_serve.router.engine import EngineResult
from ttc_serve.router.progress import ProgressEvent
from ttc_serve.router.strategies.base import Choice

Chunk = dict[str, Any]


def ask_of(body: CompletionRequest | ChatCompletionRequest, prompt: str, question: str | None = None) -> Ask:
    return Ask(model=body.model, prompt=prompt, question=question, max_tokens=body.completion_limit(),
               temperature=body.temperature, top_p=body.top_p, seed=body.seed, stop=body.stops(),
               frequency_penalty=body.frequency_penalty, presence_penalty=body.presence_penalty,
               logit_bias=body.logit_bias, logprobs=body.logprobs_wanted(), n=body.choices_wanted(),
               flops_budget=body.flops_budget, reasoning_effort=body.reasoning_effort,
               strategy=body.strategy, strategy_params=body.strategy_params, return_trace=body.return_trace)


def chosen(outcome: EngineResult, ask: Ask) -> list[Choice]:
    """The n best distinct answers (fewer when the strategy found fewer)."""
    return outcome.result.choices[:ask.n]


def usage(outcome: EngineResult) -> Usage:
    generated = outcome.ledger.generated_tokens
    first = outcome.result.choices[0].tokens
    return Usage(prompt_tokens=outcome.prompt_tokens, completion_tokens=generated,
                 total_tokens=outcome.prompt_tokens + generated,
                 completion_tokens_details=CompletionTokensDetails(
                     reasoning_tokens=max(0, generated - first)))


def completion_logprobs(choice: Choice, offset: int = 0) -> CompletionLogprobs | None:
    if choice.logprobs is None:
        return None
    offsets, at = [], offset
    for token in choice.logprobs:
        offsets.append(at)
        at += len(token.token)
    return CompletionLogprobs(
        tokens=[t.token for t in choice.logprobs], token_logprobs=[t.logprob for t in choice.logprobs],
        top_logprobs=[dict(t.top) for t in choice.logprobs], text_offset=offsets)


def chat_logprobs(choice: Choice, top: int) -> ChatLogprobs | None:
    if choice.logprobs is None:
        return None
    return ChatLogprobs(content=[
        TokenLogprobOut(token=t.token, logprob=t.logprob, bytes=list(t.token.encode()),
                        top_logprobs=[TopLogprob(token=tok, logprob=lp, bytes=list(tok.encode()))
                                      for tok, lp in t.top[:top]])
        for t in choice.logprobs])


def completion_text(body: CompletionRequest, choice: Choice) -> tuple[str, CompletionLogprobs | None]:
    prefix = body.prompt_text() if body.echo else ""
    return prefix + choice.text, completion_logprobs(choice, len(prefix))


def completion_response(body: CompletionRequest, ask: Ask, outcome: EngineResult) -> CompletionResponse:
    choices = []
    for i, choice in enumerate(chosen(outcome, ask)):
        text, logprobs = completion_text(body, choice)
        choices.append(CompletionChoice(index=i, text=text, logprobs=logprobs,
                                        finish_reason=choice.finish_reason))
    return CompletionResponse(model=body.model, usage=usage(outcome), compute=compute(outcome, ask),
                              choices=choices)


def chat_response(body: ChatCompletionRequest, ask: Ask, outcome: EngineResult) -> ChatCompletionResponse:
    return ChatCompletionResponse(
        model=body.model, usage=usage(outcome), compute=compute(outcome, ask),
        choices=[ChatChoice(index=i, message=ChatChoiceMessage(content=choice.text),
                            logprobs=chat_logprobs(choice, body.top_logprobs or 0),
                            finish_reason=choice.finish_reason)
                 for i, choice in enumerate(chosen(outcome, ask))])


def progress(event: ProgressEvent) -> dict[str, Any]:
    return Progress(stage=event.stage, round=event.round, flops_used=event.flops_used,
                    samples=event.samples, leading_answer=event.leading_answer).model_dump()


class ChunkFormat(abc.ABC):
    """The chunks of one stream: all share the id, creation time and model."""

    object = ""

    def __init__(self, ask: Ask, response_id: str):
        self.ask = ask
        self.id, self.created = response_id, now()

    def chunk(self, choices: list[dict[str, Any]], **extra: Any) -> Chunk:
        return {"id": self.id, "object": self.object, "created": self.created, "model": self.ask.model,
                "choices": choices, **extra}

    def opening(self) -> list[Chunk]:
        return []

    def progress(self, event: ProgressEvent) -> Chunk:
        """A progress event: no choices (the clients pass such chunks through, as the usage
        chunk), the figures in ``progress``."""
        return self.chunk([], progress=progress(event))

    @abc.abstractmethod
    def content(self, index: int, choice: Choice) -> dict[str, Any]:
        """A choice's text (and logprobs), in this endpoint's chunk shape."""

    @abc.abstractmethod
    def end(self, index: int, choice: Choice) -> dict[str, Any]:
        """A choice's finish_reason, in this endpoint's chunk shape."""

    def final(self, outcome: EngineResult, include_usage: bool) -> list[Chunk]:
        """Each choice's content, then each one's finish_reason; the compute block on the usage
        chunk when asked for, else on the last chunk."""
        choices = chosen(outcome, self.ask)
        chunks = [self.chunk([self.content(i, c)]) for i, c in enumerate(choices)]
        chunks += [self.chunk([self.end(i, c)]) for i, c in enumerate(choices)]
        block = compute(outcome, self.ask).model_dump()
        if include_usage:
            chunks.append(self.chunk([], usage=usage(outcome).model_dump(), compute=block))
        else:
            chunks[-1]["compute"] = block
        return chunks


class CompletionChunks(ChunkFormat):
    object = "text_completion"

    def __init__(self, body: CompletionRequest, ask: Ask):
        super().__init__(ask, completion_id())
        self.body = body

    def content(self, index: int, choice: Choice) -> dict[str, Any]:
        text, logprobs = completion_text(self.body, choice)
        return {"index": index, "text": text, "finish_reason": None,
                "logprobs": None if logprobs is None else logprobs.model_dump()}

    def end(self, index: int, choice: Choice) -> dict[str, Any]:
        return {"index": index, "text": "", "logprobs": None, "finish_reason": choice.finish_reason}


class ChatChunks(ChunkFormat):
    object = "chat.completion.chunk"

    def __init__(self, body: ChatCompletionRequest, ask: Ask):
        super().__init__(ask, chat_completion_id())
        self.top = body.top_logprobs or 0

    def opening(self) -> list[Chunk]:
        """The role, at once: the client sees the answer begin before the search ends."""
        return [self.chunk([{"index": 0, "delta": {"role": "assistant", "content": ""},
                             "logprobs": None, "finish_reason": None}])]

    def content(self, index: int, choice: Choice) -> dict[str, Any]:
        logprobs = chat_logprobs(choice, self.top)
        # choices after the first are known only at the end: their role comes with their content
        delta = {"content": choice.text} if index == 0 else {"role": "assistant", "content": choice.text}
        return {"index": index, "delta": delta, "finish_reason": None,
                "logprobs": None if logprobs is None else logprobs.model_dump()}

    def end(self, index: int, choice: Choice) -> dict[str, Any]:
        return {"index": index, "delta": {}, "logprobs": None, "finish_reason": choice.finish_reason}
