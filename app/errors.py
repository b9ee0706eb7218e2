"""One error mapper: every failure leaves as an OpenAI-style JSON error with the right status."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ttc_serve.models.vllm_http import BackendError
from ttc_serve.router.errors import DeadlineExceeded, RequestError

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """An error the app raises itself (auth, admission, unknown model)."""

    def __init__(self, status: int, message: str, type_: str, param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.headers = headers


def error_response(status: int, message: str, type_: str, param: str | None = None,
                   code: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(status_code=status, content=body, headers=headers)


def _validation_param(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":  # its loc is a byte offset, not a field
        return f"the body is not valid JSON: {(first.get('ctx') or {}).get('error', 'decode error')}", None
    # Union members show up in loc ("constrained-str", "list[str]"): keep field names and indices.
    loc = [str(p) for p in first.get("loc", ())
           if p != "body" and (isinstance(p, int) or str(p).isidentifier())]
    param = ".".join(loc) or None
    messages = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e.get('msg')}"
        for e in errors[:5])
    return messages, param


def describe(exc: Exception) -> tuple[int, dict[str, object], dict[str, str] | None]:
    """(status, OpenAI error body, headers) for a failure while serving; the handlers below and a
    stream that has already started (it sends the body as an event) both use it."""
    def body(message: str, type_: str, param: str | None = None,
             code: str | None = None) -> dict[str, object]:
        return {"error": {"message": message, "type": type_, "param": param, "code": code}}

    if isinstance(exc, RequestError):
        return exc.status, body(exc.message, "invalid_request_error", exc.param, exc.code), None
    if isinstance(exc, ApiError):
        return exc.status, body(exc.message, exc.type, exc.param, exc.code), exc.headers
    if isinstance(exc, BackendError):
        # what went wrong stays in the log (with the request id): the backend's address, the
        # exception, the backend's own words; the client gets a stable message
        logger.warning("%s backend: %s", exc.backend, exc.message)
        if exc.unavailable:
            return 503, body(f"the {exc.backend} backend is unavailable; retry shortly",
                             "service_unavailable", None, "backend_unavailable"), {"Retry-After": "5"}
        # The backend refused what we sent: the request's content is at fault (e.g. too long).
        status = f" (HTTP {exc.status})" if exc.status else ""
        return 400, body(f"the {exc.backend} backend refused the request{status}",
                         "invalid_request_error", None, "backend_rejected"), None
    if isinstance(exc, DeadlineExceeded):
        return 504, body(str(exc), "timeout", None, "deadline_exceeded"), None
    logger.error("unhandled error", exc_info=exc)
    return 500, body("internal error", "server_error", None, "internal_error"), None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def on_validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_param(exc)
        return error_response(400, message, "invalid_request_error", param, "invalid_value")

    @app.exception_handler(StarletteHTTPException)
    async def on_http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), "invalid_request_error", None,
                              None, getattr(exc, "headers", None))

    async def on_error(_: Request, exc: Exception) -> JSONResponse:
        status, content, headers = describe(exc)
        return JSONResponse(status_code=status, content=content, headers=headers)

    # the expected failures each by its class (Starlette logs and re-raises only what reaches the
    # catch-all, the unexpected)
    for known in (RequestError, ApiError, BackendError, DeadlineExceeded, Exception):
        app.add_exception_handler(known, on_error)
