"""Streaming a request as Server-Sent Events (sse-starlette), while the strategy works.

The engine runs as a task that reports a ``ProgressEvent`` at the start of each stage and the end of
each backend round; each event is sent as it happens, then the answer, then the end of the stream.
Refusals found before the strategy starts (budget, model, prompt length, admission) are still plain
HTTP errors; a failure after the stream began is sent as an error event. A client that goes away
cancels the task, and with it every backend call (sse-starlette notices the disconnect and cancels
the event generator)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any, Protocol

import anyio
from sse_starlette import EventSourceResponse, ServerSentEvent

from ttc_serve.app.errors import describe
from ttc_serve.app.openai_format import ChunkFormat
from ttc_serve.app.serving import Ask, admitted, engine_request, execute
from ttc_serve.app.state import ServiceState
from ttc_serve.router.engine import EngineResult
from ttc_serve.router.progress import ProgressEvent

KEEPALIVE_S = 15  # SSE comment lines keep proxies from closing a quiet stream during a long search


class Renderer(Protocol):
    """One API's stream format."""

    def opening(self) -> list[ServerSentEvent]: ...

    def progress(self, event: ProgressEvent) -> list[ServerSentEvent]: ...

    def final(self, outcome: EngineResult) -> list[ServerSentEvent]: ...

    def error(self, body: dict[str, Any]) -> list[ServerSentEvent]: ...

    def closing(self) -> list[ServerSentEvent]: ...


def data(payload: dict[str, Any]) -> ServerSentEvent:
    return ServerSentEvent(json.dumps(payload, separators=(",", ":")))


class ChunkStream:
    """Completions and chat completions: ``data:`` chunks, then ``data: [DONE]``."""

    def __init__(self, chunks: ChunkFormat, include_usage: bool):
        self.chunks, self.include_usage = chunks, include_usage

    def opening(self) -> list[ServerSentEvent]:
        return [data(c) for c in self.chunks.opening()]

    def progress(self, event: ProgressEvent) -> list[ServerSentEvent]:
        return [data(self.chunks.progress(event))]

    def final(self, outcome: EngineResult) -> list[ServerSentEvent]:
        return [data(c) for c in self.chunks.final(outcome, self.include_usage)]

    def error(self, body: dict[str, Any]) -> list[ServerSentEvent]:
        return [data(body)]  # the openai client raises an APIError on a chunk with "error"

    def closing(self) -> list[ServerSentEvent]:
        return [ServerSentEvent("[DONE]")]


def final_progress(outcome: EngineResult) -> ProgressEvent:
    """The last progress event: everything spent, so a client's running total ends at
    ``compute.flops_used`` (a strategy may still spend after its last round, on a final scoring)."""
    ledger = outcome.ledger
    return ProgressEvent(stage="done", round=0, flops_used=ledger.used, samples=ledger.completions,
                         leading_answer=outcome.result.answer)


async def _next(queue: asyncio.Queue[ProgressEvent],
                task: asyncio.Task[EngineResult]) -> ProgressEvent | None:
    """The next progress event, or None once the task has ended and every event was taken."""
    if not queue.empty():
        return queue.get_nowait()
    if task.done():
        return None
    getter = asyncio.ensure_future(queue.get())
    try:
        await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not getter.done():
            getter.cancel()
    if getter.done() and not getter.cancelled():
        return getter.result()
    return queue.get_nowait() if not queue.empty() else None


async def stream(state: ServiceState, ask: Ask, renderer: Renderer) -> EventSourceResponse:
    queue: asyncio.Queue[ProgressEvent] = asyncio.Queue()
    work = engine_request(state, ask, progress=queue.put_nowait)
    admission = admitted(state)
    await admission.__aenter__()  # a 429 is still an HTTP status, before any byte of the stream
    task = asyncio.ensure_future(execute(state, work))
    try:
        first = await _next(queue, task)
        if first is None:  # the engine refused before its strategy started: a plain HTTP error
            task.result()
    except BaseException:
        await _stop(task, admission)
        raise

    async def events() -> AsyncIterator[ServerSentEvent]:
        try:
            for event in renderer.opening():
                yield event
            pending = first
            while pending is not None:
                for event in renderer.progress(pending):
                    yield event
                pending = await _next(queue, task)
            outcome = task.result()
            for event in [*renderer.progress(final_progress(outcome)), *renderer.final(outcome)]:
                yield event
        except Exception as exc:  # after the stream began: the error as an event, then the end
            for event in renderer.error(describe(exc)[1]):
                yield event
        finally:
            # shielded: after a disconnect the task group is cancelled, and an unshielded await here
            # would be cancelled again before the slot is released
            with anyio.CancelScope(shield=True):
                await _stop(task, admission)
        for event in renderer.closing():
            yield event

    return EventSourceResponse(events(), ping=KEEPALIVE_S, headers={"Cache-Control": "no-cache"})


async def _stop(task: asyncio.Task[EngineResult],
                admission: contextlib.AbstractAsyncContextManager[None]) -> None:
    """Cancel the engine's work if it is still running (the client left) and release the slot."""
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await admission.__aexit__(None, None, None)
