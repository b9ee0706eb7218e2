"""``X-Request-Id``: taken from the request or made here, sent back as a header, put on every log
line about the request and on every backend call it makes (``models/request_context.py``).

A pure ASGI middleware (not Starlette's ``BaseHTTPMiddleware``), so that streamed responses and the
client's disconnect message pass through untouched."""

from __future__ import annotations

import re
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ttc_serve.models.request_context import CURRENT, RequestTag

HEADER = "X-Request-Id"
# a client's id is kept if it is short and plain (it goes into logs and other servers' headers)
_ACCEPTABLE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
        request_id = given if _ACCEPTABLE.match(given) else uuid.uuid4().hex

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        token = CURRENT.set(RequestTag(request_id))
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            CURRENT.reset(token)
