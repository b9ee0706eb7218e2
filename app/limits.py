"""Request-body limits, applied before any of the body is parsed or any work starts: its size, and
how long it may take to arrive."""

from __future__ import annotations

import asyncio
import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimit:
    """413 for a body over ``max_bytes``: at once when its Content-Length says so, else as soon as
    the bytes received pass the limit (a chunked body), so a huge prompt never reaches the
    tokenizer of a backend (a 16 MB prompt once took the generator's server down)."""

    def __init__(self, app: ASGIApp, max_bytes: int, chunk_timeout_s: float):
        self.app, self.max_bytes, self.chunk_timeout_s = app, max_bytes, chunk_timeout_s

    def message(self) -> str:
        return f"the request body is over this server's limit of {self.max_bytes} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        received, complete = 0, False

        async def limited() -> Message:
            nonlocal received, complete
            if complete:  # the body is in: what comes now is the disconnect, whenever it comes
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.chunk_timeout_s)
            except TimeoutError:  # a client that sends part of a body and stalls holds no slot
                raise HTTPException(408, f"no part of the request body arrived for "
                                         f"{self.chunk_timeout_s:g}s") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if received > self.max_bytes:  # FastAPI passes an HTTPException through as it is
                    raise HTTPException(413, self.message())
            return message

        await self.app(scope, limited, send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"error": {"message": self.message(), "type": "invalid_request_error",
                                     "param": None, "code": "request_too_large"}}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
