"""The servers of one backend role (several vLLM replicas of the generator, or of the PRM) and which
one a call goes to.

Affinity: every call of one request goes to the same replica, chosen by rendezvous (highest random
weight) hashing of the request id over the replicas that are up. A search's later rounds extend the
prompts of its earlier ones, so they find them in that replica's prefix cache; and when a replica
leaves or returns only the requests that hashed to it move. ``round_robin`` spreads calls one by
one instead (the baseline the affinity is measured against, ``bench/replicas.py``).

Each replica has its own HTTP client, its own call slots and its own health verdict, set by the
health monitor (``app/health.py``): a replica found down is skipped, and calls already waiting on it
fail at once instead of each waiting out the timeout.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from collections.abc import Awaitable, Sequence
from typing import Any, Literal

import httpx

Routing = Literal["affinity", "round_robin"]

PROBE_CONNECTIONS = 4  # of a replica's connections, kept from the calls for /health and /v1/models


class ReplicaLost(Exception):
    """The health monitor marked the replica down while a call to it was under way."""


class Replica:
    def __init__(self, url: str, *, headers: dict[str, str], timeout: httpx.Timeout,
                 max_connections: int, keepalive_expiry_s: float):
        self.url = url
        # host:port, the replica's name in metrics and logs
        self.label = httpx.URL(url).netloc.decode()
        # Calls wait here, not in httpcore's pool: its queue rescans every connection for every
        # waiting request, and a few thousand waiting calls (a wide search, many requests) kept the
        # event loop busy for minutes. A few connections stay free for the readiness probe.
        self._slots = asyncio.Semaphore(max(1, max_connections - PROBE_CONNECTIONS))
        self._lost = asyncio.Event()  # set while the health monitor finds the replica down
        self.client = httpx.AsyncClient(
            base_url=url, headers=headers, timeout=timeout,
            limits=httpx.Limits(max_connections=max_connections,
                                max_keepalive_connections=min(64, max_connections),
                                keepalive_expiry=keepalive_expiry_s))

    @property
    def available(self) -> bool:
        return not self._lost.is_set()

    def set_available(self, available: bool) -> None:
        if available:
            self._lost.clear()
        else:
            self._lost.set()

    async def ready(self) -> bool:
        try:
            return (await self.client.get("/health", timeout=2.0)).status_code == 200
        except httpx.HTTPError:
            return False

    async def post(self, endpoint: str, payload: dict[str, Any],
                   headers: dict[str, str] | None) -> httpx.Response:
        async with self._slots:
            return await self._unless_lost(self.client.post(endpoint, json=payload, headers=headers))

    async def _unless_lost(self, call: Awaitable[httpx.Response]) -> httpx.Response:
        task = asyncio.ensure_future(call)
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            await asyncio.wait({task, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if task.cancelled():
            raise ReplicaLost(self.label)
        return task.result()

    async def aclose(self) -> None:
        await self.client.aclose()


class ReplicaSet:
    """The replicas of one role, in the order a call should try them."""

    def __init__(self, replicas: Sequence[Replica], routing: Routing = "affinity"):
        if not replicas:
            raise ValueError("a backend needs at least one server URL")
        self.replicas = tuple(replicas)
        self.routing = routing
        self._turn = itertools.count()

    @property
    def available(self) -> bool:
        return any(r.available for r in self.replicas)

    def order(self, request_id: str | None) -> list[Replica]:
        """The replicas that are up, the one this call should go to first. With no request id (a
        probe at start-up) any order is right."""
        up = [r for r in self.replicas if r.available]
        if self.routing == "round_robin" or request_id is None:
            start = next(self._turn) % max(1, len(up))
            return up[start:] + up[:start]
        first = rendezvous(request_id, [r.url for r in up])
        return sorted(up, key=lambda r: first.index(r.url))

    async def aclose(self) -> None:
        await asyncio.gather(*(r.aclose() for r in self.replicas))


def rendezvous(key: str, urls: Sequence[str]) -> list[str]:
    """``urls`` in the order a call keyed ``key`` tries them: by a hash of key and URL, highest first."""
    def weight(url: str) -> int:
        digest = hashlib.blake2b(f"{key}\x00{url}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big")
    return sorted(urls, key=weight, reverse=True)
