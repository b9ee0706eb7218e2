"""The service's log format: every line about a request carries its id (``[-]`` outside one)."""

from __future__ import annotations

from typing import Any


def logging_config(level: str = "INFO") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the service and uvicorn (its ``log_config``)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "ttc_serve.models.request_context.RequestIdFilter"}},
        "formatters": {"default": {
            "format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"}},
        "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "default",
                                 "filters": ["request_id"], "stream": "ext://sys.stderr"}},
        "loggers": {
            "": {"handlers": ["default"], "level": level},
            "uvicorn": {"level": level},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"level": level},
            "httpx": {"level": "WARNING"},  # a line per backend call is the metrics' job
        },
    }
