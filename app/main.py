"""The app factory: ``create_app(settings)`` with its state built and torn down in the lifespan."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from fastapi import FastAPI

from ttc_serve.app.admission import EarlyAdmission
from ttc_serve.app.errors import install_error_handlers
from ttc_serve.app.http_protocol import with_header_timeout
from ttc_serve.app.limits import BodyLimit
from ttc_serve.app.metrics import Metrics
from ttc_serve.app.request_id import RequestIdMiddleware
from ttc_serve.app.routes import api, ops
from ttc_serve.app.settings import Settings
from ttc_serve.app.state import service_state
from ttc_serve.models.launcher import VllmServer


def create_app(settings: Settings | None = None, embedded: Sequence[VllmServer] = ()) -> FastAPI:
    """``embedded``: the vLLM servers ``ttc-serve serve`` started and supervises, if any (their
    restarts are in the metrics, and /healthz fails once one cannot be brought back)."""
    settings = settings or Settings()
    metrics = Metrics()
    metrics.watch_restarts(embedded)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with service_state(settings, metrics) as state:
            app.state.service = state
            yield

    app = FastAPI(title="ttc-serve", version="0.1.0", lifespan=lifespan,
                  description="Compute-optimal test-time inference behind an OpenAI-compatible API.")
    app.state.embedded = list(embedded)
    install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes,
                       chunk_timeout_s=settings.body_timeout_s)
    app.add_middleware(EarlyAdmission)  # before the body limit reads anything
    app.add_middleware(RequestIdMiddleware)
    app.include_router(api)
    app.include_router(ops)
    return app


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's options that are limits of the service: h11, whose header limit httptools lacks
    (an 8 MiB header was accepted), with a deadline on each request's head (``app/http_protocol.py``),
    and a drain deadline after which SIGTERM cancels what is left."""
    return {"http": with_header_timeout(settings.header_timeout_s),
            "h11_max_incomplete_event_size": settings.max_header_bytes,
            "timeout_graceful_shutdown": settings.drain_timeout_s}
