"""The embedded models on their vLLM CPU servers, with clients, for the benchmarks."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from app.settings import Settings
from models.embedded.serving import embedded_specs
from models.launcher import VllmServer, start_all
from models.vllm_http import HttpBackendConfig, VllmGenerator, VllmVerifier


@dataclass(frozen=True)
class EmbeddedBackends:
    settings: Settings
    generator_server: VllmServer
    prm_server: VllmServer
    generator: VllmGenerator
    verifier: VllmVerifier


@contextlib.asynccontextmanager
async def embedded_backends(timeout_s: float = 900) -> AsyncIterator[EmbeddedBackends]:
    """Start both servers, yield clients; close the clients and stop the servers on exit."""
    settings = Settings()
    specs = embedded_specs(settings.generator_dir, settings.prm_dir,
                           generator_name=settings.generator_served_name,
                           prm_name=settings.prm_served_name, step_tag=settings.prm_step_tag,
                           max_model_len=settings.max_model_len)
    servers = [VllmServer(spec) for spec in specs]
    try:
        await start_all(servers, 300)
        generator = VllmGenerator(HttpBackendConfig(
            servers[0].base_url, settings.generator_served_name, settings.max_model_len,
            timeout_s=timeout_s))
        verifier = VllmVerifier(HttpBackendConfig(
            servers[1].base_url, settings.prm_served_name, settings.max_model_len, timeout_s=timeout_s),
            step_tag=settings.prm_step_tag)
        try:
            yield EmbeddedBackends(settings, servers[0], servers[1], generator, verifier)
        finally:
            await generator.aclose()
            await verifier.aclose()
    finally:
        for server in servers:
            server.stop()
