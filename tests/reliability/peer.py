"""A raw WebSocket peer in a background thread that sends whatever a test queues up."""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve

PEER_KEY = "mc_" + "7a" * 32


@dataclass(frozen=True)
class RawText:
    """Bytes sent as a *text* frame as they are (e.g. not UTF-8: a protocol violation)."""

    data: bytes


Frame = str | bytes | RawText


class HostilePeer:
    """Every connection gets ``connected``, then the queued frames in order; pings answered."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._queue: asyncio.Queue[Frame] | None = None
        self._server: Server | None = None
        self.connections = 0

    def __enter__(self) -> HostilePeer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()

    async def _start(self) -> None:
        self._queue = asyncio.Queue()
        self._server = await serve(
            self._handle, "127.0.0.1", 0, max_size=None, compression=None, close_timeout=0.2
        )

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    def send(self, *frames: Frame) -> None:
        """Queue frames for the current (or next) connection, thread-safe."""
        assert self._queue is not None
        for frame in frames:
            self.loop.call_soon_threadsafe(self._queue.put_nowait, frame)

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        assert self._queue is not None
        await ws.send(json.dumps({"type": "connected", "agent_id": "agent_peer"}))

        async def answer_pings() -> None:
            async for msg in ws:
                if isinstance(msg, str) and '"ping"' in msg:
                    await ws.send(json.dumps({"type": "pong", "timestamp": 1}))

        reader = asyncio.create_task(answer_pings())
        try:
            while not reader.done():
                getter = asyncio.ensure_future(self._queue.get())
                await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    break
                frame = getter.result()
                if isinstance(frame, RawText):
                    await ws.send(frame.data, text=True)
                else:
                    await ws.send(frame)
        except Exception:
            pass  # the client dropped us (e.g. after an oversized frame)
        finally:
            reader.cancel()


def notification(nid: str, **data: Any) -> str:
    return json.dumps(
        {"type": "notification", "id": nid, "event_type": "inbox.message", "data": data or {"a": 1}}
    )
