"""Keeps the embedded vLLM servers up: a server whose process dies is reaped (its whole process
group) and started again on the same port, with backoff and a bounded number of tries. Once the
tries are spent the server is marked ``gave_up``, which the service's ``/healthz`` reports, so that
an orchestrator restarts the pod; the restarts are counted in ``ttc_backend_restarts_total``."""

from __future__ import annotations

import asyncio
import logging
import threading

from ttc_serve.models.launcher import ServerStartError, StartInterrupted, VllmServer, reap

logger = logging.getLogger(__name__)

POLL_S = 0.5
MAX_TRIES = 5  # per death; a server that dies again after coming back gets as many again
BACKOFF_S = (0.0, 2.0, 5.0, 10.0, 30.0)


class Supervisor:
    def __init__(self, servers: list[VllmServer], start_timeout_s: float):
        self.servers = servers
        self.start_timeout_s = start_timeout_s
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="vllm-supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (before the servers are stopped on purpose); waits out a restart under way
        only as long as it takes to notice."""
        self._stopping.set()
        self._thread.join(timeout=5)

    def _watch(self) -> None:
        while not self._stopping.wait(POLL_S):
            for server in self.servers:
                process = server.process
                if server.gave_up or process is None or process.poll() is None:
                    continue
                logger.error("vLLM server %s exited with %s; starting it again", server.spec.served_name,
                             process.returncode)
                reap(process)
                self._restart(server)

    def _restart(self, server: VllmServer) -> None:
        for attempt, wait_s in enumerate(BACKOFF_S[:MAX_TRIES], start=1):
            if self._stopping.wait(wait_s):
                return
            try:
                asyncio.run(server.astart(self.start_timeout_s, interrupted=self._stopping))
            except StartInterrupted:  # the service is stopping: ``running`` stops the server
                return
            except ServerStartError as exc:
                if server.process is not None:
                    reap(server.process)
                logger.error("vLLM server %s: start %d of %d failed: %s", server.spec.served_name,
                             attempt, MAX_TRIES, str(exc).splitlines()[0])
                continue
            server.restarts += 1
            logger.warning("vLLM server %s is back (restart %d)", server.spec.served_name, server.restarts)
            return
        server.gave_up = True
        logger.error("vLLM server %s: gave up after %d starts", server.spec.served_name, MAX_TRIES)
