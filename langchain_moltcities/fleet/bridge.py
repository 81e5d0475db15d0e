"""The holder's side of work sharing: client buffer -> Redis Stream, workers' acks -> MoltCities.

Runs in the process that holds the identity's lease (:mod:`.lease`), beside its
:class:`~langchain_moltcities.MoltCitiesClient`, and talks to the client only through its
public API: ``read_notifications`` (so the holder's own agent reads nothing; the workers do)
and ``aack``. Items Redis did not take stay in the bridge (bounded) and are appended when it
answers again; acked ids leave Redis's list only after the client has taken them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from langchain_moltcities.fleet.stream import WorkStream
from langchain_moltcities.protocol import NotificationFrame

if TYPE_CHECKING:
    from langchain_moltcities.client import MoltCitiesClient
    from langchain_moltcities.fleet.lease import HolderLease

__all__ = ["HolderBridge"]

_log = logging.getLogger("langchain_moltcities.fleet")

MAX_UNSENT = 10_000  # items held while Redis is down; past that the oldest wait on the client


class HolderBridge:
    """Moves one identity's notifications onto its stream and the workers' acks back."""

    def __init__(self, client: MoltCitiesClient, stream: WorkStream) -> None:
        self.client, self.stream = client, stream
        self._unsent: list[tuple[NotificationFrame, bool]] = []
        self.appended = 0
        self.acks_sent = 0

    async def pump(self) -> int:
        """One round: append what the client received, send what workers acked. Items moved."""
        if len(self._unsent) < MAX_UNSENT:
            got = self.client.read_notifications(limit=MAX_UNSENT - len(self._unsent))
            self._unsent += [(n, n.id in got.redelivered) for n in got.items]
        moved = 0
        while self._unsent:
            batch = self._unsent[:500]
            try:
                await self.stream.append_many(batch)
            except Exception as exc:  # Redis down: keep them all, try next round
                _log.warning("fleet: appending to %s failed (%s)", self.stream.key, exc)
                break
            del self._unsent[: len(batch)]
            moved += len(batch)
        self.appended += moved
        try:
            ids = await self.stream.peek_acks()
        except Exception as exc:
            _log.warning("fleet: reading acks from %s failed (%s)", self.stream.acks_key, exc)
            return moved
        if ids:
            await self.client.aack(ids)  # queued by the client if its socket is down
            await self.stream.drop_acks(len(ids))
            self.acks_sent += len(ids)
        return moved + len(ids)

    async def run(
        self, stop: asyncio.Event, *, lease: HolderLease | None = None, interval: float = 0.05
    ) -> None:
        """Pump every ``interval`` seconds until ``stop``; with a lease, only while holding."""
        while not stop.is_set():
            if lease is None or lease.holding:
                await self.pump()
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
            except TimeoutError:
                pass
