"""What the app holds while it runs, built in the lifespan: backends, engine, metrics, child servers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from app.backends import embedded_server_specs
from app.metrics import Metrics
from app.settings import EMBEDDED_POLICY, Settings
from models.chat import ChatTemplate
from models.cost import FlopsModel
from models.identity import fingerprint
from models.launcher import VllmServer, start_all
from models.vllm_http import HttpBackendConfig, VllmGenerator, VllmVerifier
from router.budget import CostModels
from router.difficulty import VerifierDifficulty
from router.engine import DifficultyPredictor, Engine, FixedPolicy, Policy
from router.policy import CalibratedPolicy, ModelIds

logger = logging.getLogger(__name__)


@dataclass
class ServiceState:
    settings: Settings
    metrics: Metrics
    generator: VllmGenerator
    verifier: VllmVerifier
    engine: Engine
    chat_template: ChatTemplate | None
    servers: list[VllmServer] = field(default_factory=list)
    in_flight: int = 0


@contextlib.asynccontextmanager
async def service_state(settings: Settings, metrics: Metrics) -> AsyncIterator[ServiceState]:
    """Start the embedded vLLM servers if no URLs are configured, build the clients and the engine;
    on exit close the clients and stop the servers (also when start-up fails half-way)."""
    servers: list[VllmServer] = []
    generator = verifier = None
    try:
        generator_url, prm_url = settings.generator_url, settings.prm_url
        if generator_url is None or prm_url is None:
            specs = embedded_server_specs(settings)
            wanted = [s for s, url in zip(specs, (generator_url, prm_url), strict=True) if url is None]
            servers = [VllmServer(spec) for spec in wanted]
            logger.info("starting %d embedded vLLM CPU server(s)", len(servers))
            try:
                await start_all(servers, settings.backend_start_timeout_s)
            except BaseExceptionGroup as group:
                raise group.exceptions[0] from None
            urls = iter(s.base_url for s in servers)
            generator_url = generator_url or next(urls)
            prm_url = prm_url or next(urls)
        generator = VllmGenerator(_config(settings, generator_url, settings.generator_served_name),
                                  observer=metrics.observe_backend)
        verifier = VllmVerifier(_config(settings, prm_url, settings.prm_served_name),
                                step_tag=settings.prm_step_tag, observer=metrics.observe_backend)
        costs = CostModels(generator=FlopsModel.from_model_dir(settings.generator_dir),
                           verifier=FlopsModel.from_model_dir(settings.prm_dir))
        policy, difficulty = load_policy(settings)
        engine = Engine(generator, verifier, costs, policy=policy, difficulty=difficulty)
        yield ServiceState(settings=settings, metrics=metrics, generator=generator,
                           verifier=verifier, engine=engine,
                           chat_template=ChatTemplate.from_model_dir(settings.generator_dir),
                           servers=servers)
    finally:
        for client in (generator, verifier):
            if client is not None:
                await client.aclose()
        for server in servers:
            await asyncio.to_thread(server.stop)


def load_policy(settings: Settings) -> tuple[Policy, DifficultyPredictor | None]:
    """The calibrated policy and its difficulty predictor; refuses one fitted for other models."""
    path = settings.policy_path
    if path is None:
        return FixedPolicy(), None
    if not path.exists():
        if path != EMBEDDED_POLICY:
            raise FileNotFoundError(f"TTC_POLICY_PATH={path} does not exist")
        logger.warning("no calibrated policy at %s: auto runs best-of-N", path)
        return FixedPolicy(), None
    policy = CalibratedPolicy.load(path)
    policy.check_models(ModelIds(generator=fingerprint(settings.generator_dir),
                                 verifier=fingerprint(settings.prm_dir)))
    spec = policy.difficulty
    samples = settings.difficulty_samples or spec.samples
    logger.info("policy %s: %d bins, %d-sample difficulty prediction", path, spec.bins, samples)
    return policy, VerifierDifficulty(samples=samples, thresholds=tuple(spec.thresholds))


def _config(settings: Settings, url: str, name: str) -> HttpBackendConfig:
    return HttpBackendConfig(base_url=url, model=name, max_model_len=settings.max_model_len,
                             api_key=settings.backend_api_key, timeout_s=settings.backend_timeout_s)
