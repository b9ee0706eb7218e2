"""A TCP proxy in front of a real vLLM server that injects the faults a real server cannot be made
to show on demand: ``slow`` (bytes held back ``SLOW_S`` per chunk, both ways), ``error`` (every new
request answered with an HTTP 500), ``close`` (every connection closed as soon as it opens) and
``pass``. Switching mode closes the connections open at that moment (except into ``slow``, which
holds them), so that in-flight calls meet the fault too. A fake only for the fault: every byte that
passes comes from and goes to the real server. For ``bench/injected_faults.py``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from typing import Literal

Mode = Literal["pass", "slow", "error", "close"]
SLOW_S = 30.0
_ERROR_BODY = json.dumps({"error": {"message": "injected fault", "type": "InternalServerError",
                                    "code": 500}}).encode()
_ERROR = (b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\n"
          b"connection: close\r\ncontent-length: " + str(len(_ERROR_BODY)).encode() + b"\r\n\r\n"
          + _ERROR_BODY)


class FaultProxy:
    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.mode: Mode = "pass"
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._writers: set[asyncio.StreamWriter] = set()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        self._started.wait(10)
        return self

    def set(self, mode: Mode) -> None:
        def switch() -> None:
            self.mode = mode
            if mode != "slow":
                for writer in list(self._writers):
                    writer.close()
        self._loop.call_soon_threadsafe(switch)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._started.set()
        self._loop.run_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "close":
            writer.close()
            return
        if self.mode == "error":
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                await reader.readuntil(b"\r\n\r\n")
                writer.write(_ERROR)
                await writer.drain()
            writer.close()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, upstream_writer}
        try:
            await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer))
        finally:
            for w in (writer, upstream_writer):
                self._writers.discard(w)
                w.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while chunk := await reader.read(65536):
                if self.mode == "slow":
                    await asyncio.sleep(SLOW_S)
                writer.write(chunk)
                await writer.drain()
        writer.close()
