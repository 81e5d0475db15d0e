"""Shared helpers for client tests: a deadline poller, tiny settings, and a hostile test peer."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from langchain_moltcities import ClientSettings

PEER_KEY = "mc_" + "5e" * 32
PEER_LOGGER = "tests.peer"

Handler = Callable[[ServerConnection, int], Awaitable[None]]


def fast_settings(**overrides: Any) -> ClientSettings:
    """Intervals in milliseconds instead of minutes, so faults show up fast."""
    base: dict[str, Any] = dict(
        ping_interval=0.2,
        # Generous on a loaded CI box so healthy links are never taken for half-open;
        # the half-open tests pass a short one.
        pong_timeout=3.0,
        backoff_base=0.02,
        backoff_cap=0.2,
        stable_after=0.5,
        poll_interval=0.1,
        close_timeout=0.2,
        request_timeout=5.0,
        connect_timeout=5.0,
    )
    base.update(overrides)
    return ClientSettings(**base)


async def eventually(
    predicate: Callable[[], object], within: float = 15.0, what: str = "condition"
) -> None:
    """Poll ``predicate`` until truthy; fail with ``what`` after a generous deadline."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def wait_until(predicate: Callable[[], object], timeout: float = 15.0, what: str = "it") -> None:
    """Sync twin of :func:`eventually` for tests without a loop."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@dataclass
class Peer:
    """A scripted WebSocket peer: ``handler(ws, n)`` runs for the n-th connection (1-based)."""

    handler: Handler | None = None
    reject_status: int | None = None
    handshakes: int = 0
    connections: int = 0
    received: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    server: Server | None = None
    # Plain-HTTP GET answers by path prefix (websockets can serve GET only): the REST stand-in.
    # A route returns a JSON body (200), or a (status, body) pair.
    http_routes: dict[str, Callable[[str], Any]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        self.paths.append(request.path)
        if request.headers.get("Upgrade", "").lower() != "websocket":
            for prefix, route in self.http_routes.items():
                if request.path.startswith(prefix):
                    answer = route(request.path)
                    code, payload = answer if isinstance(answer, tuple) else (200, answer)
                    body = json.dumps(payload).encode()
                    headers = Headers({"Content-Type": "application/json"})
                    return Response(code, HTTPStatus(code).phrase, headers, body)
            return Response(404, "Not Found", Headers(), b'{"error": "Not found"}')
        self.handshakes += 1
        if self.reject_status is not None:
            body = json.dumps({"error": "Invalid API key"}).encode()
            status = HTTPStatus(self.reject_status)
            headers = Headers({"Content-Type": "application/json"})
            return Response(status.value, status.phrase, headers, body)
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        n = self.connections
        if self.handler is None:
            await ws.send(json.dumps({"type": "connected", "agent_id": "agent_peer"}))
            async for msg in ws:
                self.received.append(str(msg))
                if json.loads(msg).get("type") == "ping":
                    await ws.send(json.dumps({"type": "pong", "timestamp": 1}))
            return
        await self.handler(ws, n)


async def answer_pings(ws: ServerConnection, peer: Peer) -> None:
    """Behave like a well-mannered server until the client goes away."""
    async for msg in ws:
        peer.received.append(str(msg))
        if json.loads(msg).get("type") == "ping":
            await ws.send(json.dumps({"type": "pong", "timestamp": 1}))


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    p = Peer()
    async with serve(
        p._handle,
        "127.0.0.1",
        0,
        process_request=p._process_request,
        close_timeout=0.2,
        # The peer is the test's stand-in server and logs request lines with the token;
        # its own logger name lets the leak tests tell it apart from the client's records.
        logger=logging.getLogger(PEER_LOGGER),
    ) as server:
        p.server = server
        yield p
