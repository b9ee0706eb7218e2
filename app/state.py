"""What the app holds while it runs, built in the lifespan from ``app.wiring``."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

from ttc_serve.app import health, wiring
from ttc_serve.app.metrics import Metrics
from ttc_serve.app.settings import Settings
from ttc_serve.models.chat import ChatTemplate
from ttc_serve.models.vllm_http import VllmGenerator, VllmVerifier
from ttc_serve.router.engine import Engine


@dataclass
class ServiceState:
    settings: Settings
    metrics: Metrics
    generator: VllmGenerator
    verifier: VllmVerifier
    engine: Engine
    chat_template: ChatTemplate | None
    default_flops_budget: float
    reasoning_effort_budgets: dict[str, float]
    in_flight: int = 0

    def authorized(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header carries the API key (any does when none is set)."""
        expected = self.settings.api_key
        if expected is None:
            return True
        scheme, _, token = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and secrets.compare_digest(token.encode(), expected.encode())


@contextlib.asynccontextmanager
async def service_state(settings: Settings, metrics: Metrics) -> AsyncIterator[ServiceState]:
    """Build the clients and the engine over the configured backends; on exit close the clients.

    The backends must be running: ``ttc-serve serve`` starts the embedded vLLM servers itself, before
    uvicorn, so that Ctrl-C during their start-up acts at once (``app/cli/serve.py``)."""
    generator_urls, prm_urls = settings.backend_urls()
    if not generator_urls or not prm_urls:
        raise RuntimeError("no backend URLs: set TTC_GENERATOR_URL(S) and TTC_PRM_URL(S), or run "
                           "`ttc-serve serve`, which starts the embedded vLLM servers")
    pair = wiring.backend_pair(settings, generator_urls, prm_urls, observer=metrics.observe_backend)
    metrics.watch_replicas(pair.generator, pair.verifier)
    monitor = asyncio.create_task(health.watch([pair.generator, pair.verifier],
                                               settings.health_interval_s))
    try:
        await wiring.fit_to_servers(settings, pair)
        policy, difficulty = wiring.load_policy(settings)
        engine = wiring.build_engine(settings, pair, policy, difficulty)
        yield ServiceState(settings=settings, metrics=metrics, generator=pair.generator,
                           verifier=pair.verifier, engine=engine,
                           chat_template=ChatTemplate.from_model_dir(settings.generator_dir),
                           default_flops_budget=wiring.default_flops_budget(settings),
                           reasoning_effort_budgets=wiring.reasoning_effort_budgets(settings))
    finally:
        monitor.cancel()
        await asyncio.gather(monitor, return_exceptions=True)
        await pair.aclose()
