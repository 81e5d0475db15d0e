"""A raw HTTP/1.1 server in a background thread that answers however a test scripts it.

For what the local MoltCities server can't play: a server that trickles bytes, answers 200 MB,
redirects, sends NaN, or quotes forged markers in its error bodies.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Responder = Callable[[Request, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class HostileHttp:
    """``respond(request, writer)`` writes whatever it likes; every request is recorded."""

    respond: Responder
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self.connections = 0

    def __enter__(self) -> HostileHttp:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                method, path, _ = line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while (h := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                request = Request(method, path, headers, body)
                self.requests.append(request)
                await self.respond(request, writer)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


def head(status: int, reason: str = "OK", **headers: str | int) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def answer(status: int, payload: Any, reason: str = "OK", **headers: str | int) -> bytes:
    """A whole response with a JSON body (``allow_nan``: a hostile server may send NaN)."""
    body = json.dumps(payload, allow_nan=True).encode()
    return (
        head(status, reason, content_type="application/json", content_length=len(body), **headers)
        + body
    )
