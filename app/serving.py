"""Serving completions: OpenAI request -> engine request -> OpenAI response with the compute block."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import replace
from typing import TypeVar

from fastapi import Request

from ttc_serve.app.errors import ApiError
from ttc_serve.app.protocol import (
    ChatChoice,
    ChatChoiceMessage,
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionChoice,
    CompletionRequest,
    CompletionResponse,
    Compute,
    DifficultyInfo,
    Usage,
)
from ttc_serve.app.state import ServiceState
from ttc_serve.models.chat import ChatTemplateError
from ttc_serve.models.vllm_http import BackendError
from ttc_serve.router.engine import EngineRequest, EngineResult
from ttc_serve.router.errors import DeadlineExceeded, RequestError

T = TypeVar("T")
CLIENT_CLOSED = 499  # nginx's "client closed request", for metrics only


@contextlib.asynccontextmanager
async def admitted(state: ServiceState) -> AsyncIterator[None]:
    """Bound the requests in flight; past the bound answer 429 at once rather than queue forever."""
    if state.in_flight >= state.settings.max_in_flight:
        state.metrics.rejected.labels("overload").inc()
        raise ApiError(429, f"{state.in_flight} requests in flight, the limit is "
                       f"{state.settings.max_in_flight}; retry shortly", "rate_limit_error",
                       code="overloaded", headers={"Retry-After": "1"})
    state.in_flight += 1
    state.metrics.in_flight.inc()
    try:
        yield
    finally:
        state.in_flight -= 1
        state.metrics.in_flight.dec()


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Run ``work``; if the client goes away first, cancel it (and with it every backend call).

    The disconnect comes from the ASGI receive channel, as in vLLM's ``with_cancellation``: once the
    body is read, the server's next message is ``http.disconnect``, sent the moment the socket
    closes. Polling ``is_disconnected()`` instead wakes every request every interval and still
    finds a disconnect up to an interval late."""
    task = asyncio.ensure_future(work)

    async def watch() -> None:
        message = await request.receive()
        while message["type"] != "http.disconnect":  # a late body chunk: keep listening
            message = await request.receive()
        task.cancel()

    watcher = asyncio.ensure_future(watch())
    try:
        return await task
    except asyncio.CancelledError:
        if watcher.done() and not asyncio.current_task().cancelling():  # type: ignore[union-attr]
            raise ApiError(CLIENT_CLOSED, "client closed the request", "client_closed") from None
        raise
    finally:
        watcher.cancel()


def _engine_request(state: ServiceState, body: CompletionRequest | ChatCompletionRequest,
                    prompt: str, question: str | None = None) -> EngineRequest:
    settings = state.settings
    if body.model != settings.model_name:
        raise ApiError(404, f"model {body.model!r} does not exist; this server serves "
                       f"{settings.model_name!r}", "invalid_request_error", "model",
                       "model_not_found")
    budget = body.flops_budget if body.flops_budget is not None else state.default_flops_budget
    if budget > settings.max_flops_budget:
        raise RequestError(f"flops_budget {budget:.4g} is over this deployment's limit of "
                           f"{settings.max_flops_budget:.4g}", "flops_budget")
    # the deployment's defaults (app.wiring), overridden by what the request sets
    defaults = state.engine.sampling
    sampling = replace(
        defaults,
        temperature=defaults.temperature if body.temperature is None else body.temperature,
        top_p=defaults.top_p if body.top_p is None else body.top_p,
        max_tokens=body.max_tokens or defaults.max_tokens,
        seed=defaults.seed if body.seed is None else body.seed)
    return EngineRequest(prompt=prompt, question=question, flops_budget=budget, strategy=body.strategy,
                         strategy_params=body.strategy_params, sampling=sampling,
                         deadline_s=settings.request_timeout_s)


def _compute(outcome: EngineResult, body: CompletionRequest | ChatCompletionRequest) -> Compute:
    ledger, result, difficulty = outcome.ledger, outcome.result, outcome.difficulty
    sampling, with_trace = outcome.sampling, body.return_trace
    return Compute(
        budget_source="request" if body.flops_budget is not None else "default",
        sampling={"temperature": sampling.temperature, "top_p": sampling.top_p, "seed": sampling.seed,
                  "max_tokens": sampling.max_tokens},
        strategy=outcome.strategy, params=result.params,
        difficulty=None if difficulty is None else DifficultyInfo(
            score=difficulty.score, bin=difficulty.bin, samples=difficulty.samples),
        flops_budget=ledger.budget, flops_used=ledger.used, flops=dict(ledger.spent),
        samples=result.samples, finish_reason=result.compute_finish_reason,
        generated_tokens=ledger.generated_tokens, scored_tokens=ledger.scored_tokens,
        backend_calls={"generate": ledger.generate_calls, "score": ledger.score_calls},
        trace=result.trace if with_trace else None, calls=ledger.calls if with_trace else None)


async def _run(state: ServiceState, request: Request, engine_request: EngineRequest) -> EngineResult:
    started = time.perf_counter()
    try:
        outcome = await cancel_on_disconnect(request, state.engine.complete(engine_request))
    except (RequestError, ApiError) as exc:
        state.metrics.observe_failure(engine_request.strategy, getattr(exc, "status", 400))
        raise
    except DeadlineExceeded:
        state.metrics.observe_failure(engine_request.strategy, 504)
        raise
    except BackendError as exc:
        state.metrics.observe_failure(engine_request.strategy, 503 if exc.unavailable else 400)
        raise
    except Exception:
        state.metrics.observe_failure(engine_request.strategy, 500)
        raise
    state.metrics.observe_result(outcome, time.perf_counter() - started)
    return outcome


def _usage(outcome: EngineResult) -> Usage:
    generated = outcome.ledger.generated_tokens
    return Usage(prompt_tokens=outcome.prompt_tokens, completion_tokens=generated,
                 total_tokens=outcome.prompt_tokens + generated)


async def complete(state: ServiceState, request: Request, body: CompletionRequest) -> CompletionResponse:
    async with admitted(state):
        outcome = await _run(state, request, _engine_request(state, body, body.prompt_text()))
    return CompletionResponse(
        model=body.model, usage=_usage(outcome), compute=_compute(outcome, body),
        choices=[CompletionChoice(text=outcome.result.text,
                                  finish_reason=outcome.result.choice_finish_reason)])


async def chat(state: ServiceState, request: Request, body: ChatCompletionRequest) -> ChatCompletionResponse:
    if state.chat_template is None:
        raise RequestError("this generator has no chat template; use /v1/completions", "messages")
    try:
        prompt = state.chat_template.render([m.model_dump() for m in body.messages],
                                            strip_bos=await state.generator.adds_bos())
    except ChatTemplateError as exc:
        raise RequestError(str(exc), "messages") from None
    async with admitted(state):
        # a PRM of another family wants the question alone, not the generator's chat layout
        question = None if state.verifier.prm.reads_generator_prompt else next(
            (m.content for m in reversed(body.messages) if m.role == "user"), None)
        outcome = await _run(state, request, _engine_request(state, body, prompt, question))
    return ChatCompletionResponse(
        model=body.model, usage=_usage(outcome), compute=_compute(outcome, body),
        choices=[ChatChoice(message=ChatChoiceMessage(content=outcome.result.text),
                            finish_reason=outcome.result.choice_finish_reason)])
