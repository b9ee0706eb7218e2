"""The backends' health, watched in the background while the service runs: a backend whose
``/health`` fails twice in a row is marked down, so that calls go to its other replicas, or, with
none left, requests needing it fail at once (503 with Retry-After) rather than each waiting out the
backend timeout; it is marked up again as soon as it answers. ``/readyz`` reports the same verdict."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from ttc_serve.models.vllm_http import VllmGenerator, VllmVerifier

logger = logging.getLogger(__name__)

MISSES_TO_DOWN = 2  # one slow answer under load is not an outage


async def watch(backends: Sequence[VllmGenerator | VllmVerifier], interval_s: float) -> None:
    """Each replica of each backend on its own: one that is down is ejected (calls go to the
    others), and returns to service when its health check passes again."""
    replicas = [(b.kind, r) for b in backends for r in b.replicas.replicas]
    misses = [0] * len(replicas)
    while True:
        answers = await asyncio.gather(*(r.ready() for _, r in replicas))
        for i, ((kind, replica), ok) in enumerate(zip(replicas, answers, strict=True)):
            misses[i] = 0 if ok else misses[i] + 1
            if ok and not replica.available:
                logger.warning("%s replica %s answers again", kind, replica.label)
                replica.set_available(True)
            elif misses[i] == MISSES_TO_DOWN and replica.available:
                logger.error("%s replica %s down: its health check failed %d times", kind,
                             replica.label, misses[i])
                replica.set_available(False)
        await asyncio.sleep(interval_s)
