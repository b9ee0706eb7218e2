"""The id of the request being served, for the backend calls it makes and the log lines about it.

A ``ContextVar``: the app sets it once per request and every task that request starts sees it, so
the backend clients need no extra argument to tag their calls."""

from __future__ import annotations

import contextlib
import itertools
import logging
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass
class RequestTag:
    request_id: str
    _calls: itertools.count[int] = field(default_factory=itertools.count)

    def backend_call_id(self) -> str:
        """A distinct id per backend call (vLLM keys its running requests by id), each starting with
        the request's, so one request can be followed through the generator's and PRM's logs."""
        return f"{self.request_id}-{next(self._calls)}"


CURRENT: ContextVar[RequestTag | None] = ContextVar("ttc_request", default=None)


@contextlib.contextmanager
def tagged() -> Iterator[RequestTag]:
    """The current request's tag, or a fresh one for work that no HTTP request started (calibrate,
    bench): its backend calls then still share one id, and so one replica (``models/replicas.py``)."""
    tag = CURRENT.get()
    if tag is not None:
        yield tag
        return
    tag = RequestTag(f"offline-{uuid.uuid4().hex[:16]}")
    token = CURRENT.set(tag)
    try:
        yield tag
    finally:
        CURRENT.reset(token)


def current_request_id() -> str | None:
    tag = CURRENT.get()
    return None if tag is None else tag.request_id


class RequestIdFilter(logging.Filter):
    """Gives every log record a ``request_id`` attribute ("-" outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id() or "-"
        return True
