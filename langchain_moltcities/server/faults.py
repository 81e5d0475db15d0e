"""A small TCP proxy in front of uvicorn that can misbehave on purpose.

The public port of a ``LocalServer`` is this proxy's. It forwards bytes both ways and can:
drop every connection abruptly (TCP reset, no close frame), freeze (stop forwarding and
reading in both directions while keeping sockets open: a half-open link), and swallow the
server's reply to a client's WebSocket close frame (the live server never answers it, so a
closing client waits out its close timeout and ends with 1006), and hold the TCP connection
open for a while after the server's own close frame (the live server keeps it about 10 s, so
a client that waits for the TCP close shows a dead channel as connected). Uvicorn's WebSocket layer
hides its transports, so doing this at the byte level is the one clean place for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

_CHUNK = 65536


class CloseFrameScanner:
    """Finds a close frame in the client-to-server bytes of an upgraded WebSocket (pure)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._skip = 0

    def feed(self, data: bytes) -> bool:
        """Consume ``data``; True once a close frame's header has been seen."""
        self._buf += data
        while True:
            if self._skip:
                n = min(self._skip, len(self._buf))
                del self._buf[:n]
                self._skip -= n
                if self._skip:
                    return False
            if len(self._buf) < 2:
                return False
            b0, b1 = self._buf[0], self._buf[1]
            length, header = b1 & 0x7F, 2
            if length == 126:
                header = 4
            elif length == 127:
                header = 10
            if b1 & 0x80:
                header += 4  # masking key
            if len(self._buf) < header:
                return False
            if (b0 & 0x0F) == 0x8:
                return True
            if length == 126:
                length = int.from_bytes(self._buf[2:4], "big")
            elif length == 127:
                length = int.from_bytes(self._buf[2:10], "big")
            del self._buf[:header]
            self._skip = length


class _Pair:
    """One client connection and its upstream twin."""

    def __init__(
        self,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.client_reader, self.client_writer = client
        self.up_reader, self.up_writer = upstream
        self.upgraded = False
        self.client_closed = False  # the client started the closing handshake
        self.server_closed = False  # the server started it (its close goes out as usual)
        self.client_scanner = CloseFrameScanner()
        self.server_scanner = CloseFrameScanner()
        self.tasks: list[asyncio.Task[None]] = []

    def abort(self) -> None:
        sock = self.client_writer.get_extra_info("socket")
        if sock is not None:
            # Linger 0 makes close() send a reset: the peer sees a dead link, not a FIN.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.client_writer.transport.abort()
        self.up_writer.transport.abort()
        for task in self.tasks:
            task.cancel()


class FaultProxy:
    """Forwards ``host:port`` to ``127.0.0.1:upstream_port``, with fault switches."""

    def __init__(self, *, swallow_close_replies: bool = False, close_hold: float = 0.0) -> None:
        self.swallow_close_replies = swallow_close_replies
        # Seconds the client's TCP connection stays open after the server's close frame.
        self.close_hold = close_hold
        self.upstream_port = 0
        self._server: asyncio.Server | None = None
        self._pairs: set[_Pair] = set()
        self._thawed = asyncio.Event()
        self._thawed.set()

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0: a free port); returns the bound port."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        # Restarting on the same port must not wait out TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self._server = await asyncio.start_server(self._handle, sock=sock)
        bound: int = sock.getsockname()[1]
        return bound

    async def stop(self) -> None:
        """Stop listening and drop every connection."""
        if self._server is not None:
            self._server.close()
        self.drop_all()
        self.thaw()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    def drop_all(self) -> None:
        """Reset every proxied TCP connection (no close frame)."""
        for pair in list(self._pairs):
            pair.abort()
        self._pairs.clear()

    def freeze(self) -> None:
        """Stop forwarding bytes (a half-open link) until :meth:`thaw`."""
        self._thawed.clear()

    def thaw(self) -> None:
        """Forward bytes again."""
        self._thawed.set()

    @property
    def _scan_server(self) -> bool:
        return self.swallow_close_replies or self.close_hold > 0

    @property
    def frozen(self) -> bool:
        """Whether forwarding is stopped."""
        return not self._thawed.is_set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        pair = _Pair((reader, writer), upstream)
        self._pairs.add(pair)
        pair.tasks = [
            asyncio.create_task(self._client_to_server(pair)),
            asyncio.create_task(self._server_to_client(pair)),
        ]
        await asyncio.gather(*pair.tasks, return_exceptions=True)
        self._pairs.discard(pair)
        for w in (pair.client_writer, pair.up_writer):
            w.close()

    async def _client_to_server(self, pair: _Pair) -> None:
        try:
            while True:
                await self._thawed.wait()
                data = await pair.client_reader.read(_CHUNK)
                if not data:
                    break
                await self._thawed.wait()
                if self.swallow_close_replies and pair.upgraded and not pair.client_closed:
                    pair.client_closed = pair.client_scanner.feed(data) and not pair.server_closed
                if not pair.up_writer.is_closing():
                    pair.up_writer.write(data)
                    with contextlib.suppress(ConnectionError):
                        await pair.up_writer.drain()
        except ConnectionError:
            pass
        # The client is gone: so is everything.
        pair.client_writer.close()
        pair.up_writer.close()
        for task in pair.tasks:
            if task is not asyncio.current_task():
                task.cancel()

    async def _server_to_client(self, pair: _Pair) -> None:
        try:
            while True:
                await self._thawed.wait()
                data = await pair.up_reader.read(_CHUNK)
                if not data:
                    break
                await self._thawed.wait()
                frames = data
                if not pair.upgraded and data.startswith(b"HTTP/1.1 101"):
                    pair.upgraded = True
                    frames = data.partition(b"\r\n\r\n")[2]
                if self._scan_server and pair.upgraded and not pair.server_closed:
                    pair.server_closed = pair.server_scanner.feed(frames)
                if pair.client_closed:
                    continue  # live mode: the reply to the client's close never leaves
                pair.client_writer.write(data)
                await pair.client_writer.drain()
        except ConnectionError:
            pass
        if pair.client_closed:
            return  # keep the client socket open until the client gives up
        if pair.server_closed and self.close_hold > 0:
            # The close frame went out; the TCP close comes only after the hold (or when the
            # client drops the socket itself: that cancels this task).
            await asyncio.sleep(self.close_hold)
        pair.client_writer.close()
