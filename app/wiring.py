"""The one place that turns ``Settings`` into the object graph: backend clients, cost models, the
policy and its difficulty predictor, sampling defaults and the ``Engine``.

Every entry point builds through here — ``serve`` (``app/state.py``), ``calibrate`` and ``bench``
(``app/cli/``), the benchmarks under ``bench/`` and the training rollouts — so that an offline
run measures exactly the configuration the service serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ttc_serve.app.settings import EMBEDDED_POLICY, Settings
from ttc_serve.models.cost import FlopsModel
from ttc_serve.models.embedded.serving import embedded_specs
from ttc_serve.models.identity import fingerprint
from ttc_serve.models.launcher import ServerSpec, VllmServer, start_all
from ttc_serve.models.vllm_http import (
    CallObserver,
    HttpBackendConfig,
    VllmGenerator,
    VllmVerifier,
    same_tokenizer,
    served_max_model_len,
)
from ttc_serve.router.budget import CostModels, prm_tokens_bound
from ttc_serve.router.difficulty import DifficultyPredictor, VerifierDifficulty
from ttc_serve.router.engine import Engine
from ttc_serve.router.policy import CalibratedPolicy, FixedPolicy, ModelIds, Policy, PolicyMismatch
from ttc_serve.router.strategies.base import SamplingConfig

logger = logging.getLogger(__name__)

# Offline runs (calibrate, bench, evaluations, training rollouts) queue hundreds of requests on one
# CPU server at once, so a single call may wait minutes behind the others; and vLLM's API process,
# busy detokenising a large batch, can take longer than the serving connect timeout to accept the
# next connections. A request to the service never waits that long: it has its own deadline.
OFFLINE_TIMEOUT_S = 900.0
OFFLINE_CONNECT_TIMEOUT_S = 60.0


def offline(settings: Settings) -> Settings:
    """The settings an offline run uses: the service's own, with the offline timeouts."""
    return settings.model_copy(update={
        "backend_timeout_s": max(settings.backend_timeout_s, OFFLINE_TIMEOUT_S),
        "backend_connect_timeout_s": max(settings.backend_connect_timeout_s, OFFLINE_CONNECT_TIMEOUT_S)})


def sampling_defaults(settings: Settings) -> SamplingConfig:
    """What a request that sets nothing samples with; requests override field by field."""
    return SamplingConfig(temperature=settings.default_temperature, top_p=1.0,
                          max_tokens=settings.default_max_tokens,
                          step_delimiter=settings.step_delimiter, answer_match=settings.answer_match,
                          max_samples_per_call=settings.max_samples_per_call)


# A request without a budget gets what this many PRM-scored samples of the default length cost (after
# a prompt of DEFAULT_BUDGET_PROMPT tokens), so that the default fits whatever models are deployed.
DEFAULT_BUDGET_SAMPLES = 4
DEFAULT_BUDGET_PROMPT = 128


def default_flops_budget(settings: Settings) -> float:
    if settings.default_flops_budget is not None:
        return settings.default_flops_budget
    return scored_samples_flops(settings, DEFAULT_BUDGET_SAMPLES)


def reasoning_effort_budgets(settings: Settings) -> dict[str, float]:
    """What each ``reasoning_effort`` may spend: its count of scored samples on these models."""
    return {effort: scored_samples_flops(settings, samples)
            for effort, samples in settings.reasoning_effort_samples.items()}


def scored_samples_flops(settings: Settings, samples: float) -> float:
    """What ``samples`` PRM-scored samples of default_max_tokens after a 128-token prompt cost on the
    deployed models (two significant digits), within the deployment's cap."""
    costs, m = cost_models(settings), settings.default_max_tokens
    sample = costs.sample_worst(DEFAULT_BUDGET_PROMPT, m) + costs.score_worst(
        prm_tokens_bound(DEFAULT_BUDGET_PROMPT, m, max(1, m // 4)))
    derived = costs.generator.span(0, DEFAULT_BUDGET_PROMPT) + samples * sample
    return float(min(settings.max_flops_budget, float(f"{derived:.2g}")))


def cost_models(settings: Settings) -> CostModels:
    return CostModels(generator=FlopsModel.from_model_dir(settings.generator_dir),
                      verifier=FlopsModel.from_model_dir(settings.prm_dir))


def model_ids(settings: Settings) -> ModelIds:
    """What a calibrated policy must have been fitted for."""
    return ModelIds(generator=fingerprint(settings.generator_dir), verifier=fingerprint(settings.prm_dir))


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
    try:
        policy.check_models(model_ids(settings))
    except PolicyMismatch as exc:
        if path != EMBEDDED_POLICY:  # asked for by name: serving it for other models would mislead
            raise
        # the shipped policy, by default, in front of other models: it says nothing about them
        logger.warning("the shipped policy is for the embedded models, not these (%s): auto runs "
                       "best-of-N until a policy fitted for them is given (TTC_POLICY_PATH)", exc)
        return FixedPolicy(), None
    spec = policy.difficulty
    samples = settings.difficulty_samples or spec.samples
    logger.info("policy %s: %d bins, %d-sample difficulty prediction", path, spec.bins, samples)
    return policy, VerifierDifficulty(samples=samples, thresholds=tuple(spec.thresholds))


@dataclass(frozen=True)
class BackendPair:
    """Clients of the generator's servers and the PRM's (one or more replicas each)."""

    generator: VllmGenerator
    verifier: VllmVerifier

    async def aclose(self) -> None:
        await self.generator.aclose()
        await self.verifier.aclose()

    @property
    def width(self) -> int:
        """How many requests' worth of servers it has: offline runs size their concurrency by it."""
        return max(len(self.generator.replicas.replicas), len(self.verifier.replicas.replicas))


def _config(settings: Settings, urls: Sequence[str], name: str,
            max_model_len: int | None = None) -> HttpBackendConfig:
    return HttpBackendConfig(urls=tuple(urls), model=name,
                             max_model_len=max_model_len or settings.max_model_len,
                             api_key=settings.backend_api_key, timeout_s=settings.backend_timeout_s,
                             connect_timeout_s=settings.backend_connect_timeout_s,
                             routing=settings.replica_routing)


def backend_pair(settings: Settings, generator_urls: Sequence[str], prm_urls: Sequence[str],
                 observer: CallObserver | None = None) -> BackendPair:
    """Clients of these servers: each list is one role's replicas."""
    return BackendPair(
        VllmGenerator(_config(settings, generator_urls, settings.generator_served_name), observer=observer),
        VllmVerifier(_config(settings, prm_urls, settings.prm_served_name), prm=settings.prm(),
                     observer=observer))


async def fit_to_servers(settings: Settings, pair: BackendPair) -> None:
    """What only the servers can tell: each one's context length (where no setting gives it), and
    whether they tokenize alike (else PRM inputs are counted in the PRM's own tokens). A server that
    cannot be asked yet leaves the safe assumptions: TTC_MAX_MODEL_LEN, and separate tokenizers."""
    for backend, configured in ((pair.generator, settings.generator_max_model_len),
                                (pair.verifier, settings.prm_max_model_len)):
        served = configured or await served_max_model_len(backend)
        if served is not None:
            backend.max_model_len = served
    pair.verifier.shares_generator_tokenizer = await same_tokenizer(pair.generator, pair.verifier)
    logger.info("generator context %d, verifier context %d, %s tokenizer", pair.generator.max_model_len,
                pair.verifier.max_model_len,
                "one" if pair.verifier.shares_generator_tokenizer else "the verifier's own")


def build_engine(settings: Settings, pair: BackendPair, policy: Policy | None = None,
                 difficulty: DifficultyPredictor | None = None) -> Engine:
    return Engine(pair.generator, pair.verifier, cost_models(settings), policy=policy,
                  difficulty_predictor=difficulty, revision=settings.revision_format(),
                  check=settings.check_format(), sampling=sampling_defaults(settings))


def engines(settings: Settings, pairs: Sequence[BackendPair], policy: Policy | None = None,
            difficulty: DifficultyPredictor | None = None) -> list[Engine]:
    return [build_engine(settings, pair, policy, difficulty) for pair in pairs]


def embedded_server_specs(settings: Settings) -> tuple[ServerSpec, ServerSpec]:
    """The embedded generator and PRM as these settings configure them."""
    return embedded_specs(settings.generator_dir, settings.prm_dir,
                          generator_name=settings.generator_served_name,
                          prm_name=settings.prm_served_name, step_tag=settings.prm().step_tag,
                          max_model_len=settings.max_model_len, generator_cpu=settings.generator_cpu_bind,
                          prm_cpu=settings.prm_cpu_bind)


@contextlib.asynccontextmanager
async def backend_pairs(settings: Settings, generator_urls: Sequence[str] = (),
                        prm_urls: Sequence[str] = ()) -> AsyncIterator[list[BackendPair]]:
    """One client pair per URL pair given (each a comma-separated list of one role's replicas), else
    one over the settings' replicas, else the embedded models on vLLM CPU servers started for the
    purpose (and stopped on exit)."""
    if len(generator_urls) != len(prm_urls):
        raise ValueError("give as many --generator-url as --prm-url (one PRM per generator)")
    urls = [(_split(g), _split(p)) for g, p in zip(generator_urls, prm_urls, strict=True)]
    configured = settings.backend_urls()
    if not urls and all(configured):
        urls = [configured]
    servers: list[VllmServer] = []
    pairs: list[BackendPair] = []
    try:
        if not urls:
            servers = [VllmServer(spec) for spec in embedded_server_specs(settings)]
            try:
                await start_all(servers, settings.backend_start_timeout_s)
            except BaseExceptionGroup as group:
                raise group.exceptions[0] from None
            urls = [([servers[0].base_url], [servers[1].base_url])]
        pairs = [backend_pair(settings, g, p) for g, p in urls]
        for pair in pairs:
            await fit_to_servers(settings, pair)
        yield pairs
    finally:
        for pair in pairs:
            await pair.aclose()
        for server in servers:
            await asyncio.to_thread(server.stop)


def _split(urls: str) -> list[str]:
    return [url.strip() for url in urls.split(",") if url.strip()]


@contextlib.asynccontextmanager
async def checkpoint_generator(settings: Settings, model_dir: Path, served_name: str,
                               max_model_len: int) -> AsyncIterator[VllmGenerator]:
    """A vLLM CPU server for one generator checkpoint (on both cores) and a client of it; the
    server is stopped on exit. For evaluations and training rollouts, not for serving."""
    server = VllmServer(ServerSpec(model_dir, served_name, max_model_len=max_model_len, cpu_bind="0-1"))
    try:
        await start_all([server], settings.backend_start_timeout_s)
        generator = VllmGenerator(_config(settings, [server.base_url], served_name, max_model_len))
        try:
            yield generator
        finally:
            await generator.aclose()
    finally:
        await asyncio.to_thread(server.stop)
