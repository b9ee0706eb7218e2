"""Prometheus metrics (prefix ``ttc_``), held per app in their own registry. Labels stay low-cardinality."""

from __future__ import annotations

import functools
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ttc_serve.models.launcher import VllmServer
from ttc_serve.models.replicas import Replica
from ttc_serve.models.vllm_http import VllmGenerator, VllmVerifier
from ttc_serve.router.engine import STRATEGY_NAMES, EngineResult

_FLOPS_BUCKETS = tuple(10.0**e for e in range(6, 19))
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_RATIO_BUCKETS = (0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 1.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("ttc_requests", "Completion requests by outcome",
                                ["strategy", "difficulty_bin", "status"], registry=r)
        self.latency = Histogram("ttc_request_latency_seconds", "Request latency", ["strategy"],
                                 buckets=_LATENCY_BUCKETS, registry=r)
        self.flops_used = Histogram("ttc_flops_used", "Inference FLOPs spent per request",
                                    ["strategy"], buckets=_FLOPS_BUCKETS, registry=r)
        self.flops_total = Counter("ttc_flops", "Inference FLOPs spent, by account", ["account"],
                                   registry=r)
        self.utilisation = Histogram("ttc_budget_utilization_ratio", "flops_used / flops_budget",
                                     ["strategy"], buckets=_RATIO_BUCKETS, registry=r)
        self.difficulty = Histogram("ttc_difficulty_score", "Predicted difficulty score",
                                    buckets=_RATIO_BUCKETS, registry=r)
        self.samples = Histogram("ttc_samples_per_request", "Samples drawn per request",
                                 ["strategy"], buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
                                 registry=r)
        self.finished = Counter("ttc_compute_finish", "Answered requests by compute.finish_reason "
                                "(answered, no_answer, budget_exhausted)", ["finish_reason"],
                                registry=r)
        self.generated_tokens = Counter("ttc_generated_tokens", "Tokens generated", registry=r)
        self.scored_tokens = Counter("ttc_prm_scored_tokens", "Tokens scored by the PRM", registry=r)
        self.backend_calls = Counter("ttc_backend_calls", "Backend HTTP calls",
                                     ["backend", "replica", "endpoint", "outcome"], registry=r)
        self.backend_latency = Histogram("ttc_backend_latency_seconds", "Backend call latency",
                                         ["backend", "replica", "endpoint"], buckets=_LATENCY_BUCKETS,
                                         registry=r)
        self.in_flight = Gauge("ttc_requests_in_flight", "Requests being served", registry=r)
        self.rejected = Counter("ttc_requests_rejected", "Requests refused before any work",
                                ["reason"], registry=r)

    def watch_restarts(self, servers: Sequence[VllmServer]) -> None:
        restarts = Gauge("ttc_backend_restarts", "Times an embedded vLLM server was started again after "
                         "it died", ["backend"], registry=self.registry)
        for server in servers:
            restarts.labels(server.spec.served_name).set_function(functools.partial(_restarts, server))

    def watch_replicas(self, *backends: VllmGenerator | VllmVerifier) -> None:
        up = Gauge("ttc_backend_up", "1 while the health monitor finds a backend replica serving",
                   ["backend", "replica"], registry=self.registry)
        for backend in backends:
            for replica in backend.replicas.replicas:
                up.labels(backend.kind, replica.label).set_function(functools.partial(_up, replica))

    def observe_backend(self, backend: str, replica: str, endpoint: str, seconds: float,
                        error: str | None) -> None:
        self.backend_calls.labels(backend, replica, endpoint, error or "ok").inc()
        self.backend_latency.labels(backend, replica, endpoint).observe(seconds)

    def observe_result(self, outcome: EngineResult, seconds: float) -> None:
        strategy = outcome.strategy
        ledger = outcome.ledger
        bin_label = str(outcome.difficulty.bin) if outcome.difficulty else "none"
        self.requests.labels(strategy, bin_label, "ok").inc()
        self.latency.labels(strategy).observe(seconds)
        self.flops_used.labels(strategy).observe(ledger.used)
        for account, flops in ledger.spent.items():
            self.flops_total.labels(account).inc(flops)
        self.utilisation.labels(strategy).observe(ledger.used / ledger.budget)
        self.samples.labels(strategy).observe(outcome.result.samples)
        self.finished.labels(outcome.result.compute_finish_reason).inc()
        self.generated_tokens.inc(ledger.generated_tokens)
        self.scored_tokens.inc(ledger.scored_tokens)
        if outcome.difficulty is not None:
            self.difficulty.observe(outcome.difficulty.score)

    def observe_failure(self, strategy: str, status: int) -> None:
        # the client's own string: a label value only if it names a strategy, so that made-up names
        # cannot grow the series without bound
        label = strategy if strategy in STRATEGY_NAMES else "unknown"
        self.requests.labels(label, "none", str(status)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _up(replica: Replica) -> float:
    return 1.0 if replica.available else 0.0


def _restarts(server: VllmServer) -> float:
    return float(server.restarts)
