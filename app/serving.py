"""Serving a request on the engine: what any endpoint asks (``Ask``) -> engine request -> result,
with admission, cancellation on disconnect and metrics. The endpoints' own formats are in
``app/openai_format.py`` and ``app/responses_api.py``, their flows in ``app/endpoints.py``, and
streaming in ``app/streaming.py`` (Server-Sent Events)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from fastapi import Request

from ttc_serve.app.errors import ApiError
from ttc_serve.app.protocol import Compute, DifficultyInfo
from ttc_serve.app.state import ServiceState
from ttc_serve.models.chat import ChatTemplateError
from ttc_serve.models.vllm_http import BackendError
from ttc_serve.router.engine import EngineRequest, EngineResult
from ttc_serve.router.errors import DeadlineExceeded, RequestError
from ttc_serve.router.progress import ProgressListener

T = TypeVar("T")
CLIENT_CLOSED = 499  # nginx's "client closed request", for metrics only
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ask:
    """What a request of any endpoint (completions, chat, responses) asks of the engine."""

    model: str
    prompt: str
    question: str | None = None  # what the verifier sees as the question (None: the prompt)
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logit_bias: Mapping[str, float] | None = None
    logprobs: int | None = None
    n: int = 1
    flops_budget: float | None = None
    reasoning_effort: str | None = None
    strategy: str = "auto"
    strategy_params: Mapping[str, Any] | None = None
    return_trace: bool = False

    def budget_source(self) -> str:
        if self.flops_budget is not None:
            return "request"
        return "default" if self.reasoning_effort is None else "reasoning_effort"


def overloaded(state: ServiceState) -> ApiError | None:
    """The 429 a request gets while the service is at its bound on requests in flight."""
    if state.in_flight < state.settings.max_in_flight:
        return None
    return ApiError(429, f"{state.in_flight} requests in flight, the limit is "
                    f"{state.settings.max_in_flight}; retry shortly", "rate_limit_error",
                    code="overloaded", headers={"Retry-After": "1"})


@contextlib.asynccontextmanager
async def admitted(state: ServiceState) -> AsyncIterator[None]:
    """Bound the requests in flight; past the bound answer 429 at once rather than queue forever
    (most are refused before their body is read, ``app/admission.py``)."""
    refusal = overloaded(state)
    if refusal is not None:
        state.metrics.rejected.labels("overload").inc()
        raise refusal
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


class UnsupportedParameter(RequestError):
    code = "unsupported_parameter"


def refuse_unsupported(problem: tuple[str, str] | None) -> None:
    """A field set to something this service cannot do: a 400 naming it and saying why."""
    if problem is not None:
        param, why = problem
        raise UnsupportedParameter(f"{param}: {why}", param)


async def chat_prompt(state: ServiceState, messages: list[dict[str, str]]) -> tuple[str, str | None]:
    """(the generator's prompt, the verifier's question) for a conversation."""
    if state.chat_template is None:
        raise RequestError("this generator has no chat template; use /v1/completions", "messages")
    try:
        prompt = state.chat_template.render(messages, strip_bos=await state.generator.adds_bos())
    except ChatTemplateError as exc:
        raise RequestError(str(exc), "messages") from None
    # a PRM of another family wants the question alone, not the generator's chat layout
    question = None if state.verifier.prm.reads_generator_prompt else next(
        (m["content"] for m in reversed(messages) if m["role"] == "user"), None)
    return prompt, question


def engine_request(state: ServiceState, ask: Ask, progress: ProgressListener | None = None) -> EngineRequest:
    settings = state.settings
    if ask.model != settings.model_name:
        raise ApiError(404, f"model {ask.model!r} does not exist; this server serves "
                       f"{settings.model_name!r}", "invalid_request_error", "model",
                       "model_not_found")
    if ask.flops_budget is not None:
        budget = ask.flops_budget
    elif ask.reasoning_effort is not None:
        budget = state.reasoning_effort_budgets[ask.reasoning_effort]
    else:
        budget = state.default_flops_budget
    if budget > settings.max_flops_budget:
        raise RequestError(f"flops_budget {budget:.4g} is over this deployment's limit of "
                           f"{settings.max_flops_budget:.4g}", "flops_budget")
    # the deployment's defaults (app.wiring), overridden by what the request sets
    defaults = state.engine.sampling

    def given(value: T | None, default: T) -> T:
        return default if value is None else value

    sampling = replace(
        defaults, temperature=given(ask.temperature, defaults.temperature),
        top_p=given(ask.top_p, defaults.top_p), max_tokens=ask.max_tokens or defaults.max_tokens,
        seed=given(ask.seed, defaults.seed), stop=ask.stop,
        frequency_penalty=given(ask.frequency_penalty, 0.0),
        presence_penalty=given(ask.presence_penalty, 0.0),
        logit_bias=ask.logit_bias or None, logprobs=ask.logprobs)
    return EngineRequest(prompt=ask.prompt, question=ask.question, flops_budget=budget,
                         strategy=ask.strategy, strategy_params=ask.strategy_params, sampling=sampling,
                         deadline_s=settings.request_timeout_s, progress=progress)


async def execute(state: ServiceState, request: EngineRequest) -> EngineResult:
    """The engine's work for one request, counted in the metrics whatever its end."""
    started = time.perf_counter()
    status = 500
    try:
        outcome = await state.engine.complete(request)
        status = 200
    except (RequestError, ApiError) as exc:
        status = exc.status
        raise
    except DeadlineExceeded:
        status = 504
        raise
    except BackendError as exc:
        status = 503 if exc.unavailable else 400
        raise
    except asyncio.CancelledError:
        status = CLIENT_CLOSED
        raise
    finally:
        if status != 200:
            state.metrics.observe_failure(request.strategy, status)
            logger.info("failed: strategy=%s status=%d", request.strategy, status)
    state.metrics.observe_result(outcome, time.perf_counter() - started)
    logger.info("completed: strategy=%s flops_used=%.4g of %.4g samples=%d", outcome.strategy,
                outcome.ledger.used, outcome.ledger.budget, outcome.ledger.completions)
    return outcome


async def run(state: ServiceState, request: Request, ask: Ask) -> EngineResult:
    """Serve ``ask`` to its end: admitted, cancelled if the client goes away."""
    work = engine_request(state, ask)
    async with admitted(state):
        return await cancel_on_disconnect(request, execute(state, work))


def compute(outcome: EngineResult, ask: Ask, with_trace: bool | None = None) -> Compute:
    ledger, result, difficulty = outcome.ledger, outcome.result, outcome.difficulty
    sampling = outcome.sampling
    with_trace = ask.return_trace if with_trace is None else with_trace
    return Compute(
        budget_source=ask.budget_source(),
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
