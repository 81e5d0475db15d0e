"""One worker process of a fleet sharing an agent identity: holder when it wins the lease,
consumer always.

Every worker runs the same :class:`FleetWorker`. The one holding the lease (:mod:`.lease`)
opens the MoltCities client (sockets, with ``state=`` on the same Redis) and bridges it to the
stream (:mod:`.bridge`); the moment it stops holding it stops bridging and closes the client.
All workers, the holder included, take notifications from the stream through the consumer
group and hand each to ``handler``; an item is acked (and so marked read on MoltCities) only
after ``handler`` returns, so a worker that dies mid-turn leaves it for another. With
``handler=None`` a worker only takes its turn as holder (sharing chat, presence and its status
too) and leaves reading to an agent's tools (:class:`~.client.FleetClient`). A holder
displaced by MoltCities (4003: another connection took the socket) steps down and stays out
for ``displaced_pause`` seconds rather than fight for the socket.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable

from langchain_moltcities.client import MoltCitiesClient
from langchain_moltcities.fleet.board import HolderBoard
from langchain_moltcities.fleet.bridge import HolderBridge
from langchain_moltcities.fleet.lease import HolderLease
from langchain_moltcities.fleet.stream import StreamEntry, WorkStream
from langchain_moltcities.fleet.town import TownStream
from langchain_moltcities.settings import ClientSettings
from langchain_moltcities.state import StateError

__all__ = ["FleetWorker", "Handler"]

_log = logging.getLogger("langchain_moltcities.fleet")

Handler = Callable[[StreamEntry], Awaitable[None]]


class FleetWorker:
    """Serve ``identity`` (any stable name of the agent, e.g. its handle) as one of N workers."""

    def __init__(
        self,
        api_key: str,
        base_url: str,
        redis_url: str,
        identity: str,
        handler: Handler | None,
        *,
        name: str | None = None,
        lease_ttl: float = 5.0,
        visibility_timeout: float = 30.0,
        settings: ClientSettings | None = None,
        on_holding: Callable[[bool], None] | None = None,
        displaced_pause: float = 60.0,
    ) -> None:
        self.api_key, self.base_url, self.redis_url = api_key, base_url, redis_url
        self.identity, self.handler, self.settings = identity, handler, settings
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.on_holding, self.displaced_pause = on_holding, displaced_pause
        self.lease = HolderLease(redis_url, identity, ttl=lease_ttl)
        self.stream = WorkStream(redis_url, identity, visibility_timeout=visibility_timeout)
        self.town = TownStream(redis_url, identity)
        self.board = HolderBoard(redis_url, identity)
        self.client: MoltCitiesClient | None = None

    def __repr__(self) -> str:
        return f"FleetWorker({self.identity!r}, {self.name!r}, holding={self.lease.holding})"

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set."""
        try:
            consume = [self._consume(stop)] if self.handler is not None else []
            await asyncio.gather(self.lease.run(stop), self._hold(stop), *consume)
        finally:
            await self._drop_client()
            await self.stream.aclose()
            await self.town.aclose()
            await self.board.aclose()
            await self.lease.aclose()

    async def _hold(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if not self.lease.holding:
                await self._drop_client()
                await self._wait(stop, self.lease.renew_every / 4)
                continue
            try:
                client = MoltCitiesClient(
                    self.api_key, self.base_url, settings=self.settings, state=self.redis_url
                )
            except StateError as exc:  # Redis went away between the lease and the state
                _log.warning("fleet: cannot open the holder's client (%s)", exc)
                await self._wait(stop, self.lease.renew_every)
                continue
            await asyncio.to_thread(client.start)
            self.client = client
            # "Holding" for the caller means serving: the sockets are up (bounded wait).
            await asyncio.to_thread(client.wait_connected, self.lease.ttl * 4)
            if self.on_holding is not None:
                self.on_holding(True)
            bridge = HolderBridge(
                client, self.stream, town=self.town, board=self.board, name=self.name,
                lease=self.lease,
            )  # fmt: skip
            while not stop.is_set() and self.lease.holding:
                if self._displaced(client):
                    # 4003: a connection outside this fleet took the agent's socket. Stop
                    # holding at once and stay out for a while instead of taking it back.
                    _log.warning(
                        "fleet: %s displaced (4003); stepping down for %g s",
                        self.name,
                        self.displaced_pause,
                    )
                    await self.lease.step_down(self.displaced_pause)
                    await self._drop_client()
                    break
                try:
                    await bridge.pump()
                except Exception as exc:  # one bad round must not end the holder
                    _log.warning("fleet: holder round failed (%s)", exc)
                await self._wait(stop, 0.02)
            await self._drop_client()

    @staticmethod
    def _displaced(client: MoltCitiesClient) -> bool:
        return any(c.state == "displaced" for c in client.status().channels.values())

    async def _drop_client(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            if self.on_holding is not None:
                self.on_holding(False)
            await asyncio.to_thread(client.close)

    async def _consume(self, stop: asyncio.Event) -> None:
        assert self.handler is not None
        while not stop.is_set():
            try:
                entries = await self.stream.read(self.name, count=10, block=0.2)
            except Exception as exc:
                _log.warning("fleet: reading %s failed (%s)", self.stream.key, exc)
                await self._wait(stop, 0.5)
                continue
            for entry in entries:
                await self.handler(entry)
                await self._ack(entry, stop)

    async def _ack(self, entry: StreamEntry, stop: asyncio.Event) -> None:
        # Redis may be away: keep trying (until stop) so the entry is not claimed and handled
        # again by another worker once its visibility timeout runs out.
        while True:
            try:
                await self.stream.ack([entry])
                return
            except Exception as exc:
                if stop.is_set():
                    return
                _log.warning("fleet: ack of %s failed (%s); retrying", entry.frame.id, exc)
                await self._wait(stop, 0.2)

    @staticmethod
    async def _wait(stop: asyncio.Event, seconds: float) -> None:
        try:
            await asyncio.wait_for(stop.wait(), timeout=seconds)
        except TimeoutError:
            pass
