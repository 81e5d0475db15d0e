"""The holder's side of the fleet: client buffers -> Redis Streams, workers' asks -> MoltCities.

Runs in the process that holds the identity's lease (:mod:`.lease`), beside its
:class:`~langchain_moltcities.MoltCitiesClient`, and talks to the client only through its
public API: ``read_notifications`` (so the holder's own agent reads nothing; the workers do)
and ``aack``; with a :class:`~.town.TownStream`, ``read_town_square`` (chat and presence for
every worker); with a :class:`~.board.HolderBoard`, its status for the workers' tools and the
subscription their agents asked for (``aset_subscriptions``). Items Redis did not take stay in
the bridge (bounded) and are appended when it answers again; acked ids leave Redis's list
only after the client has taken them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from langchain_moltcities.catchup import UNMATCHABLE_REST_TYPES, ChatGap, oldest_first
from langchain_moltcities.errors import MoltCitiesError
from langchain_moltcities.fleet.stream import WorkStream
from langchain_moltcities.fleet.town import TownItem, TownStream
from langchain_moltcities.protocol import NotificationFrame

if TYPE_CHECKING:
    from langchain_moltcities.client import MoltCitiesClient
    from langchain_moltcities.fleet.board import HolderBoard
    from langchain_moltcities.fleet.lease import HolderLease

__all__ = ["HolderBridge"]

_log = logging.getLogger("langchain_moltcities.fleet")

MAX_UNSENT = 10_000  # items held while Redis is down; past that the oldest wait on the client


class HolderBridge:
    """Moves one identity's notifications onto its stream and the workers' acks back."""

    def __init__(
        self,
        client: MoltCitiesClient,
        stream: WorkStream,
        *,
        town: TownStream | None = None,
        board: HolderBoard | None = None,
        name: str = "holder",
        status_every: float = 0.25,
        lease: HolderLease | None = None,
    ) -> None:
        self.client, self.stream, self.town, self.board = client, stream, town, board
        self.lease = lease  # when given, acks are taken and dropped only while it holds
        self.name, self.status_every = name, status_every
        self._unsent: list[tuple[NotificationFrame, bool]] = []
        self._unsent_town: list[TownItem] = []
        self._unsent_gaps: list[ChatGap] = []
        self._applied = 0  # the subscription version this holder's client was given
        self._next_status = 0.0
        self._caught_up = False
        self._next_catch_up = 0.0
        self.appended = 0
        self.acks_sent = 0
        self.town_appended = 0

    async def pump(self) -> int:
        """One round: append what the client received, send what workers acked (and share
        chat, status and subscriptions when set up for them). Items moved."""
        moved = await self._pump_town() if self.town is not None else 0
        if self.board is not None and time.monotonic() >= self._next_status:
            self._next_status = time.monotonic() + self.status_every
            await self._pump_board(self.board)
        return moved + await self._pump_notifications()

    async def _pump_town(self) -> int:
        assert self.town is not None
        if len(self._unsent_town) < MAX_UNSENT:
            got = self.client.read_town_square(limit=MAX_UNSENT - len(self._unsent_town))
            self._unsent_town += got.items
        self._unsent_gaps += self.client.chat_gaps(unreported=True)
        if self._unsent_gaps:
            try:
                await self.town.append_gaps(self._unsent_gaps[:100])
                del self._unsent_gaps[:100]
            except Exception as exc:  # Redis down: keep them, try next round
                _log.warning("fleet: appending gaps to %s failed (%s)", self.town.key, exc)
        moved = 0
        while self._unsent_town:
            batch = self._unsent_town[:500]
            try:
                await self.town.append_many(batch)
            except Exception as exc:  # Redis down: keep them, try next round
                _log.warning("fleet: appending to %s failed (%s)", self.town.key, exc)
                break
            del self._unsent_town[: len(batch)]
            moved += len(batch)
        self.town_appended += moved
        return moved

    async def _pump_board(self, board: HolderBoard) -> None:
        try:
            wanted = await board.wanted()
            if wanted is not None and wanted[0] > self._applied:
                try:
                    await self.client.aset_subscriptions(wanted[1])
                except MoltCitiesError as exc:  # kept by the client, re-sent on reconnect
                    _log.warning("fleet: subscription not confirmed (%s)", exc)
                self._applied = wanted[0]
            ttl = max(3 * self.status_every, 2.0)
            await board.publish(self.name, self.client, self._applied, ttl)
        except Exception as exc:
            _log.warning("fleet: holder status round failed (%s)", exc)

    async def _catch_up(self) -> None:
        """Once per holder: the unread messages and guestbook entries listed over REST.

        The live server pushes at most once: what it pushed onto the old holder's dying
        socket is not pushed again, but stays unread in the REST list. Items the stream has
        already are skipped by their REST id (see :mod:`.stream`); job events are left out
        (their REST ids can't be tied to the socket's, so they would come twice).
        """
        if self._caught_up or time.monotonic() < self._next_catch_up:
            return
        try:
            page = await self.client.alist_notifications(unread=True, limit=100)
        except MoltCitiesError as exc:
            self._next_catch_up = time.monotonic() + 1.0
            _log.warning("fleet: REST catch-up of unread notifications failed (%s)", exc)
            return
        self._caught_up = True
        self._unsent += [
            (item.to_notification(), False)
            for item in oldest_first(page.notifications)
            if item.type not in UNMATCHABLE_REST_TYPES
        ]

    async def _pump_notifications(self) -> int:
        await self._catch_up()
        if len(self._unsent) < MAX_UNSENT:
            got = self.client.read_notifications(limit=MAX_UNSENT - len(self._unsent))
            self._unsent += [(n, n.id in got.redelivered) for n in got.items]
        moved = 0
        while self._unsent:
            batch = self._unsent[:500]
            try:
                self.appended += await self.stream.append_many(batch)  # new ones only
            except Exception as exc:  # Redis down: keep them all, try next round
                _log.warning("fleet: appending to %s failed (%s)", self.stream.key, exc)
                break
            del self._unsent[: len(batch)]
            moved += len(batch)
        if self.lease is not None and not self.lease.holding:
            return moved  # the acks are the next holder's to send
        try:
            ids = await self.stream.peek_acks()
        except Exception as exc:
            _log.warning("fleet: reading acks from %s failed (%s)", self.stream.acks_key, exc)
            return moved
        if ids:
            await self.client.aack(ids)  # queued by the client if its socket is down
            fence = None if self.lease is None else (self.lease.key, self.lease.token)
            if not await self.stream.drop_acks(len(ids), lease=fence):
                # The lease changed hands while this holder was away (a freeze, a stall):
                # its client may only have queued these; the new holder sends them again.
                _log.info("fleet: %s lost the lease; %d ack(s) left to the next holder",
                          self.name, len(ids))  # fmt: skip
                return moved
            self.acks_sent += len(ids)
        return moved + len(ids)

    async def run(
        self, stop: asyncio.Event, *, lease: HolderLease | None = None, interval: float = 0.05
    ) -> None:
        """Pump every ``interval`` seconds until ``stop``; with a lease, only while holding."""
        if lease is not None:
            self.lease = lease
        while not stop.is_set():
            if lease is None or lease.holding:
                await self.pump()
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
            except TimeoutError:
                pass
