"""The backends' health, watched in the background while the service runs: a backend whose
``/health`` fails twice in a row is marked down, so that requests needing it fail at once (503 with
Retry-After) rather than each waiting out the backend timeout, and marked up again as soon as it
answers. ``/readyz`` reports the same verdict."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from ttc_serve.models.vllm_http import VllmGenerator, VllmVerifier

logger = logging.getLogger(__name__)

MISSES_TO_DOWN = 2  # one slow answer under load is not an outage


async def watch(backends: Sequence[VllmGenerator | VllmVerifier], interval_s: float) -> None:
    misses = [0] * len(backends)
    while True:
        answers = await asyncio.gather(*(b.ready() for b in backends))
        for i, (backend, ok) in enumerate(zip(backends, answers, strict=True)):
            misses[i] = 0 if ok else misses[i] + 1
            if ok and not backend.available:
                logger.warning("%s backend answers again", backend.kind)
                backend.set_available(True)
            elif misses[i] == MISSES_TO_DOWN and backend.available:
                logger.error("%s backend down: its health check failed %d times", backend.kind, misses[i])
                backend.set_available(False)
        await asyncio.sleep(interval_s)
