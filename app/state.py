"""What the app holds while it runs, built in the lifespan: backend clients, engine, metrics."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from app.metrics import Metrics
from app.settings import EMBEDDED_POLICY, Settings
from models.chat import ChatTemplate
from models.cost import FlopsModel
from models.identity import fingerprint
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
    in_flight: int = 0


@contextlib.asynccontextmanager
async def service_state(settings: Settings, metrics: Metrics) -> AsyncIterator[ServiceState]:
    """Build the clients and the engine over the configured backends; on exit close the clients.

    The backends must be running: ``ttc-serve serve`` starts the embedded vLLM servers itself, before
    uvicorn, so that Ctrl-C during their start-up acts at once (``app/cli.py``)."""
    if settings.generator_url is None or settings.prm_url is None:
        raise RuntimeError("no backend URLs: set TTC_GENERATOR_URL and TTC_PRM_URL, or run "
                           "`ttc-serve serve`, which starts the embedded vLLM servers")
    generator = VllmGenerator(_config(settings, settings.generator_url, settings.generator_served_name),
                              observer=metrics.observe_backend)
    verifier = VllmVerifier(_config(settings, settings.prm_url, settings.prm_served_name),
                            step_tag=settings.prm_step_tag, observer=metrics.observe_backend)
    try:
        costs = CostModels(generator=FlopsModel.from_model_dir(settings.generator_dir),
                           verifier=FlopsModel.from_model_dir(settings.prm_dir))
        policy, difficulty = load_policy(settings)
        engine = Engine(generator, verifier, costs, policy=policy, difficulty=difficulty,
                        revision=settings.revision_format(),
                        check=settings.check_format())
        yield ServiceState(settings=settings, metrics=metrics, generator=generator,
                           verifier=verifier, engine=engine,
                           chat_template=ChatTemplate.from_model_dir(settings.generator_dir))
    finally:
        await generator.aclose()
        await verifier.aclose()


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
