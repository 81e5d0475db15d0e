"""A minimal MoltCities-speaking server that floods, paces or replays frames.

It speaks just enough of the protocol: ``connected`` on both channels, ``pong`` to pings,
``subscribed`` to a subscribe, and ``GET /api/me``. What it sends is chosen by the URL path
before ``/api/...``, so one server process serves every benchmark and both clients see the
very same bytes:

- ``/flood/N/api/...``: after the client's first frame (the "go"), N notifications written
  as fast as the socket takes them, the first and last a ``mention`` (so a client's
  ``on_mention`` brackets the flood). Frames are framed by hand and written straight to
  the transport, so the server costs almost nothing and the client is what is measured.
- ``/mentions/N/INTERVAL_US/api/...``: after the go, N mentions, one every INTERVAL_US
  microseconds, each carrying its send time (CLOCK_MONOTONIC ns) in ``data.sent_ns``.
- ``/script/api/...``: the LLM-cost sample (``items.py``), notifications on the personal
  channel, chats on Town Square.
- ``/idle/api/...``: ``connected`` and pongs only.

Run it as ``python -m benchmarks.flood_server``: it prints ``PORT <n>`` and serves until its
stdin closes. Compression is off (no permessage-deflate), as the hand framing needs.
"""

from __future__ import annotations

import asyncio
import json
import struct
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from benchmarks.common import ROOT, now_ns
from benchmarks.items import COST_CHATS, COST_NOTIFICATIONS, flood_frame, mention_frame

AGENT_ID = "agent_bench"
HANDLE = "bench"
_CHUNK = 512  # frames per transport write
_HIGH_WATER = 4 << 20  # bytes buffered before the writer yields


def ws_text_frame(payload: bytes) -> bytes:
    """An unmasked server-to-client text frame (RFC 6455 section 5.2)."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 1 << 16:
        return b"\x81\x7e" + struct.pack("!H", n) + payload
    return b"\x81\x7f" + struct.pack("!Q", n) + payload


def _route(path: str) -> tuple[list[str], str | None]:
    parts = urlsplit(path)
    segments = [s for s in parts.path.split("/") if s]
    head = segments[: segments.index("api")] if "api" in segments else segments
    channel = parse_qs(parts.query).get("channel", [None])[0]
    return head, channel


def _process_request(connection: ServerConnection, request: Request) -> Response | None:
    if "upgrade" in request.headers.get("Connection", "").lower():
        return None
    if urlsplit(request.path).path.endswith("/api/me"):
        body = json.dumps({"agent": {"id": AGENT_ID, "name": "Bench", "handle": HANDLE}})
        response = connection.respond(200, body)
        response.headers = Headers(
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        )
        return response
    return connection.respond(404, '{"error": "not served by the flood server"}')


async def _reply(ws: ServerConnection, raw: str | bytes) -> dict[str, object] | None:
    """Answer a client frame the way the server would; return it parsed."""
    try:
        msg = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(msg, dict):
        return None
    if msg.get("type") == "ping":
        await ws.send(json.dumps({"type": "pong", "timestamp": now_ns() // 1_000_000}))
    elif msg.get("type") == "subscribe":
        await ws.send(json.dumps({"type": "subscribed", "events": msg.get("events", [])}))
    return msg


async def _wait_go(ws: ServerConnection) -> None:
    while True:
        msg = await _reply(ws, await ws.recv())
        if msg is not None and msg.get("type") != "ping":
            return


async def _answer_forever(ws: ServerConnection) -> None:
    async for raw in ws:
        await _reply(ws, raw)


async def _flood(ws: ServerConnection, n: int) -> None:
    transport = ws.transport
    marks = {0, n - 1}  # mentions first and last: a client's on_mention brackets the flood
    i = 0
    while i < n:
        end = min(n, i + _CHUNK)
        chunk = [
            ws_text_frame((mention_frame(k, now_ns()) if k in marks else flood_frame(k)).encode())
            for k in range(i, end)
        ]
        transport.write(b"".join(chunk))
        i = end
        while transport.get_write_buffer_size() > _HIGH_WATER:
            if transport.is_closing():
                return
            await asyncio.sleep(0.0005)


async def _mentions(ws: ServerConnection, n: int, interval_us: int) -> None:
    interval = interval_us / 1e6
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(n):
        # Paced on an absolute schedule so a late send doesn't shift all later ones.
        delay = start + i * interval - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await ws.send(mention_frame(i, now_ns()))


async def _handler(ws: ServerConnection) -> None:
    assert ws.request is not None
    head, channel = _route(ws.request.path)
    mode = head[0] if head else "idle"
    town = channel == "town-square"
    if town:
        await ws.send(
            json.dumps(
                {
                    "type": "connected",
                    "channel": "town-square",
                    "online_count": 1,
                    "server_time": "2026-11-28T14:37:00.000Z",
                }
            )
        )
    else:
        await ws.send(
            json.dumps(
                {
                    "type": "connected",
                    "connection_id": "bench",
                    "agent_id": AGENT_ID,
                    "server_time": "2026-11-28T14:37:00.000Z",
                }
            )
        )
    with suppress(ConnectionClosed):
        if mode == "script":
            frames = COST_CHATS if town else COST_NOTIFICATIONS
            for frame in frames:
                await ws.send(json.dumps(frame, ensure_ascii=False, separators=(",", ":")))
        elif mode in ("flood", "mentions") and not town:
            await _wait_go(ws)
            if mode == "flood":
                await _flood(ws, int(head[1]))
            else:
                await _mentions(ws, int(head[1]), int(head[2]))
        await _answer_forever(ws)


class FloodServer:
    """The flood server on a thread of this process (for tests); see :func:`flood_process`."""

    def __init__(self) -> None:
        self.port = 0
        self._ready = threading.Event()
        self._stop: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._main, name="flood-server", daemon=True)

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = self._loop.create_future()
        async with serve(
            _handler,
            "127.0.0.1",
            0,
            compression=None,
            process_request=_process_request,
            max_size=1 << 20,
            ping_interval=None,
        ) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._ready.set()
            await self._stop

    def __enter__(self) -> FloodServer:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set_result, None)
        self._thread.join(10)


@contextmanager
def flood_process() -> Iterator[str]:
    """The flood server in its own process (so it never competes for our GIL); yields its URL."""
    import subprocess

    from benchmarks.common import _child_env

    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.flood_server"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=_child_env(),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"flood server did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    with FloodServer() as server:
        print(f"PORT {server.port}", flush=True)
        sys.stdin.read()  # until the parent closes our stdin (or dies)


if __name__ == "__main__":
    main()
