"""Shared fixtures: the real vLLM CPU servers with the shipped models (once per session), and the real
service on loopback in front of them, spoken to over HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from hypothesis import settings as hypothesis_settings

from ttc_serve.app.main import create_app, server_options
from ttc_serve.app.settings import Settings
from ttc_serve.app.wiring import embedded_server_specs
from ttc_serve.models.launcher import VllmServer, free_port, running

# The suite shares 2 cores with vLLM servers: wall-clock deadlines would only measure contention.
hypothesis_settings.register_profile("shared-cpu", deadline=None, max_examples=200)
hypothesis_settings.load_profile("shared-cpu")


@dataclass(frozen=True)
class Backends:
    generator: VllmServer
    prm: VllmServer


@pytest.fixture(scope="session")
def backends() -> Iterator[Backends]:
    with running(*embedded_server_specs(Settings()), timeout_s=300) as (generator, prm):
        yield Backends(generator, prm)


class LiveService:
    """The real app under uvicorn in a thread, on a free loopback port."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.port = free_port()
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=self.port,
                                log_level="warning", lifespan="on", **server_options(settings))
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveService:
        self.thread.start()
        deadline = time.monotonic() + 300
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("service did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)


def service_settings(backends: Backends, **overrides: Any) -> Settings:
    return Settings(generator_url=backends.generator.base_url, prm_url=backends.prm.base_url,
                    **overrides)


@pytest.fixture(scope="session")
def service(backends: Backends) -> Iterator[LiveService]:
    with LiveService(service_settings(backends)) as live:
        yield live


@pytest.fixture()
def client(service: LiveService) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.url, timeout=120) as http:
        yield http
