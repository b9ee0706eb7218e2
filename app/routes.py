"""Thin routes: parse, authorise, hand to ``app.serving``."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from ttc_serve.app import endpoints
from ttc_serve.app.errors import ApiError
from ttc_serve.app.protocol import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionRequest,
    CompletionResponse,
    ErrorResponse,
    ModelCard,
    ModelList,
)
from ttc_serve.app.responses_api import ResponsesRequest
from ttc_serve.app.state import ServiceState
from ttc_serve.models.vllm_http import VllmGenerator, VllmVerifier


def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


State = Annotated[ServiceState, Depends(get_state)]


def require_key(state: State, authorization: Annotated[str | None, Header()] = None) -> None:
    if not state.authorized(authorization):
        raise ApiError(401, "missing or invalid API key (send 'Authorization: Bearer <key>')",
                       "authentication_error", code="invalid_api_key",
                       headers={"WWW-Authenticate": "Bearer"})


_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404, 429, 503, 504)}

api = APIRouter(prefix="/v1", dependencies=[Depends(require_key)], responses=_ERRORS)
ops = APIRouter()


@api.post("/completions", response_model=CompletionResponse,
          responses={200: {"content": {"text/event-stream": {}}, "description": "stream: true"}})
async def create_completion(body: CompletionRequest, request: Request, state: State) -> Any:
    return await endpoints.completion(state, request, body)


@api.post("/chat/completions", response_model=ChatCompletionResponse,
          responses={200: {"content": {"text/event-stream": {}}, "description": "stream: true"}})
async def create_chat_completion(body: ChatCompletionRequest, request: Request, state: State) -> Any:
    return await endpoints.chat(state, request, body)


@api.post("/responses", responses={200: {"content": {"text/event-stream": {}}}})
async def create_response(body: ResponsesRequest, request: Request, state: State) -> Any:
    return await endpoints.responses(state, request, body)


@api.get("/models", response_model=ModelList)
async def list_models(state: State) -> ModelList:
    return ModelList(data=[ModelCard(id=state.settings.model_name,
                                     max_model_len=state.settings.max_model_len)])


@ops.get("/healthz")
async def healthz(request: Request) -> JSONResponse:
    """Liveness: fails only when the service cannot recover by itself (an embedded backend that
    could not be started again), so that restarting the process is the remedy; a backend that is
    merely down is /readyz's business."""
    lost = [s.spec.served_name for s in request.app.state.embedded if s.gave_up]
    if lost:
        return JSONResponse({"status": "failed", "lost_backends": lost}, status_code=503)
    return JSONResponse({"status": "ok"})


@ops.get("/readyz")
async def readyz(state: State) -> JSONResponse:
    # the health monitor's verdict (app/health.py), and a probe now, so that a backend that just
    # went away is reported before the monitor has seen it fail twice
    roles: dict[str, VllmGenerator | VllmVerifier] = {"generator": state.generator,
                                                      "verifier": state.verifier}
    counts = await asyncio.gather(*(_serving_replicas(backend) for backend in roles.values()))
    serving = dict(zip(roles, counts, strict=True))
    ready = all(serving.values())
    body = {"status": "ready" if ready else "unavailable",
            "backends": {role: n > 0 for role, n in serving.items()},
            "replicas": {role: {"serving": serving[role], "of": len(backend.replicas.replicas)}
                         for role, backend in roles.items()}}
    return JSONResponse(body, status_code=200 if ready else 503)


async def _serving_replicas(backend: VllmGenerator | VllmVerifier) -> int:
    replicas = backend.replicas.replicas
    probes = await asyncio.gather(*(r.ready() for r in replicas))
    return sum(ok and r.available for r, ok in zip(replicas, probes, strict=True))


@ops.get("/metrics")
async def metrics(state: State) -> Response:
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
