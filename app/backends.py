"""Engines for offline work (calibrate, bench): over given vLLM server pairs, or over the embedded
models on vLLM CPU servers started for the purpose (and stopped after)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

from app.settings import Settings
from models.cost import FlopsModel
from models.embedded.serving import embedded_specs
from models.launcher import ServerSpec, VllmServer, start_all
from models.vllm_http import HttpBackendConfig, VllmGenerator, VllmVerifier
from router.budget import CostModels
from router.engine import DifficultyPredictor, Engine, Policy

Pair = tuple[VllmGenerator, VllmVerifier]


def embedded_server_specs(settings: Settings) -> tuple[ServerSpec, ServerSpec]:
    """The embedded generator and PRM as these settings configure them."""
    return embedded_specs(settings.generator_dir, settings.prm_dir,
                          generator_name=settings.generator_served_name,
                          prm_name=settings.prm_served_name, step_tag=settings.prm_step_tag,
                          max_model_len=settings.max_model_len, generator_cpu=settings.generator_cpu_bind,
                          prm_cpu=settings.prm_cpu_bind)


@contextlib.asynccontextmanager
async def backend_pairs(settings: Settings, generator_urls: Sequence[str] = (),
                        prm_urls: Sequence[str] = ()) -> AsyncIterator[list[Pair]]:
    """One (generator, verifier) client pair per URL pair; with no URLs, the embedded servers."""
    if len(generator_urls) != len(prm_urls):
        raise ValueError("give as many --generator-url as --prm-url (one PRM per generator)")
    servers: list[VllmServer] = []
    clients: list[Pair] = []
    try:
        urls = list(zip(generator_urls, prm_urls, strict=True))
        if not urls:
            servers = [VllmServer(spec) for spec in embedded_server_specs(settings)]
            try:
                await start_all(servers, settings.backend_start_timeout_s)
            except BaseExceptionGroup as group:
                raise group.exceptions[0] from None
            urls = [(servers[0].base_url, servers[1].base_url)]
        for generator_url, prm_url in urls:
            clients.append((
                VllmGenerator(_config(settings, generator_url, settings.generator_served_name)),
                VllmVerifier(_config(settings, prm_url, settings.prm_served_name),
                             step_tag=settings.prm_step_tag)))
        yield clients
    finally:
        for generator, verifier in clients:
            await generator.aclose()
            await verifier.aclose()
        for server in servers:
            await asyncio.to_thread(server.stop)


def engines(settings: Settings, pairs: Sequence[Pair],
            policy: Policy | None = None, difficulty: DifficultyPredictor | None = None) -> list[Engine]:
    costs = CostModels(generator=FlopsModel.from_model_dir(settings.generator_dir),
                       verifier=FlopsModel.from_model_dir(settings.prm_dir))
    revision, check = settings.revision_format(), settings.check_format()
    return [Engine(g, v, costs, policy=policy, difficulty=difficulty, revision=revision,
                   check=check)
            for g, v in pairs]


def _config(settings: Settings, url: str, name: str) -> HttpBackendConfig:
    # offline runs queue many requests at once: allow a long wait for each
    return HttpBackendConfig(base_url=url, model=name, max_model_len=settings.max_model_len,
                             api_key=settings.backend_api_key,
                             timeout_s=max(600.0, settings.backend_timeout_s))
