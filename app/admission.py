"""Admission before the body is read: when the service already has ``TTC_MAX_IN_FLIGHT`` requests
in flight, a completion request is answered 429 (Retry-After) as soon as its head arrives, without
reading or parsing its body. Under overload most requests are refused, and reading and validating
each one's JSON first made the refusals slower than they need be. ``serving.admitted`` still
guards the count itself (requests admitted between this check and the endpoint)."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from ttc_serve.app.errors import describe
from ttc_serve.app.serving import overloaded
from ttc_serve.app.state import ServiceState

ADMITTED_PATHS = frozenset({"/v1/completions", "/v1/chat/completions", "/v1/responses"})


class EarlyAdmission:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in ADMITTED_PATHS:
            state: ServiceState | None = getattr(scope["app"].state, "service", None)
            refusal = None if state is None else overloaded(state)
            # a client without the key learns nothing about the load: it gets its 401 as usual
            if refusal is not None and state is not None and state.authorized(
                    Headers(scope=scope).get("authorization")):
                state.metrics.rejected.labels("overload").inc()
                status, body, headers = describe(refusal)
                await JSONResponse(body, status_code=status, headers=headers)(scope, receive, send)
                return
        await self.app(scope, receive, send)
