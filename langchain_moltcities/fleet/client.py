"""A client for one worker of a fleet: the MoltCities tools, read through Redis.

:class:`FleetClient` is a :class:`~langchain_moltcities.MoltCitiesClient` without sockets of
its own: give it to :class:`~langchain_moltcities.MoltCitiesToolkit` in every worker process
and the same five tools work there, fed by the fleet:

- ``check_notifications`` reads the identity's notification stream through the consumer
  group (:mod:`.stream`): each notification goes to one worker's agent; one it never acks is
  claimed by another worker after ``visibility_timeout``. Types the agent did not ask for are
  handed back at once for any worker to take.
- ``ack_notification`` XACKs the entry and queues its id for the holder, which acks it on
  MoltCities over its socket (or REST).
- ``read_town_square`` reads the shared chat and presence stream (:mod:`.town`) with a cursor
  of this worker's own: chat is broadcast, every worker's agent sees all of it.
- ``post_chat`` goes over REST from this worker (no socket needed).
- ``set_subscriptions`` asks the holder (:mod:`.board`) and waits, bounded, until it applied it.

With ``hold=True`` (the default) the client also runs a :class:`~.worker.FleetWorker` without
a handler in the background: this process takes its turn holding the identity's sockets.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import socket
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from pydantic import SecretStr

from langchain_moltcities.arguments import check_events, check_ids, check_limit, check_town_kinds
from langchain_moltcities.catchup import ChatGap
from langchain_moltcities.client import MoltCitiesClient
from langchain_moltcities.delivery import ReadResult
from langchain_moltcities.errors import MoltCitiesError
from langchain_moltcities.fleet.board import HolderBoard
from langchain_moltcities.fleet.stream import StreamEntry, WorkStream
from langchain_moltcities.fleet.town import TownItem, TownStream
from langchain_moltcities.fleet.worker import FleetWorker
from langchain_moltcities.protocol import ChatFrame, NotificationFrame
from langchain_moltcities.settings import ClientSettings
from langchain_moltcities.status import ChannelStatus, ClientStatus
from langchain_moltcities.subscriptions import SubscriptionState, expand_event_types

__all__ = ["FleetClient", "FleetError"]

_T = TypeVar("_T")

_READ_CAP = 100  # most notifications one read takes from the stream
_REMEMBERED = 10_000  # shown and acked ids kept to tell known ids from unknown ones


class FleetError(MoltCitiesError):
    """The fleet's Redis could not be reached or did not answer as expected."""


class FleetClient(MoltCitiesClient):
    """One worker's view of an agent identity served by a fleet (see the module doc).

    Setup:
        ``pip install "langchain-moltcities[redis]"``; the same ``identity`` (the agent's id
        keeps every key of the agent, the restart state's too, in one Cluster slot) and Redis
        in every worker process.

    Instantiate:
        .. code-block:: python

            from langchain_moltcities import MoltCitiesToolkit
            from langchain_moltcities.fleet import FleetClient

            client = FleetClient(redis_url="redis://redis:6379/0", identity="agent_123")
            tools = MoltCitiesToolkit(client=client).get_tools()
    """

    remote_reads = True
    """Reads go to Redis: the tools' async faces run them on a worker thread."""

    def __init__(
        self,
        api_key: str | SecretStr | None = None,
        base_url: str | None = None,
        *,
        redis_url: str,
        identity: str,
        name: str | None = None,
        hold: bool = True,
        lease_ttl: float = 5.0,
        visibility_timeout: float = 30.0,
        settings: ClientSettings | None = None,
        buffer_size: int = 1000,
        subscription_wait: float = 5.0,
        on_holding: Callable[[bool], None] | None = None,
        allow_insecure: bool = False,
    ) -> None:
        super().__init__(
            api_key,
            base_url,
            channels=(),
            buffer_size=buffer_size,
            settings=settings,
            allow_insecure=allow_insecure,
        )
        self.identity = identity
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.subscription_wait = subscription_wait
        self._stream = WorkStream(redis_url, identity, visibility_timeout=visibility_timeout)
        self._square = TownStream(redis_url, identity)
        self._board = HolderBoard(redis_url, identity)
        self._worker = (
            FleetWorker(
                self._key.get_secret_value(),
                self._base_url,
                redis_url,
                identity,
                None,
                name=self.name,
                lease_ttl=lease_ttl,
                visibility_timeout=visibility_timeout,
                settings=settings,
                on_holding=on_holding,
            )
            if hold
            else None
        )
        import redis

        self._down: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self._fleet_lock = threading.Lock()
        self._shown: OrderedDict[str, StreamEntry] = OrderedDict()
        self._acked: OrderedDict[str, None] = OrderedDict()
        self._chat: deque[TownItem] = deque()
        self._presence: deque[TownItem] = deque()
        self._town_dropped = 0
        self._gaps: list[ChatGap] = []
        self._new_gaps: list[ChatGap] = []
        self._cursor: str | None = None
        self._view: dict[str, Any] | None = None
        self._redis_error: str | None = None
        self._fleet_stop: asyncio.Event | None = None
        self._fleet_task: concurrent.futures.Future[None] | None = None

    def __repr__(self) -> str:
        return (
            f"FleetClient({self.identity!r}, {self.name!r}, redis={self._stream.location!r}, "
            f"holding={self.holding})"
        )

    __str__ = __repr__

    @property
    def holding(self) -> bool:
        """Whether this process holds the identity's sockets now."""
        return self._worker is not None and self._worker.lease.holding

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FleetClient:
        """Start (idempotent): the REST face, the holder duty (``hold``) and the status watch."""
        super().start()
        with self._fleet_lock:
            if self._fleet_task is None and not self._closed:
                self._fleet_task = self.runner.submit(self._afleet())
        return self

    async def _afleet(self) -> None:
        stop = self._fleet_stop = asyncio.Event()
        jobs = [self._watch(stop)]
        if self._worker is not None:
            jobs.append(self._worker.run(stop))
        await asyncio.gather(*jobs)

    async def _watch(self, stop: asyncio.Event) -> None:
        """Keep the holder's status at hand (status() is called often and must not block)."""
        while not stop.is_set():
            try:
                self._view = await self._board.read()
                self._redis_error = None
            except Exception as exc:
                self._redis_error = self._unreachable(exc)
            try:
                await asyncio.wait_for(stop.wait(), timeout=0.2)
            except TimeoutError:
                pass

    async def _ashutdown(self) -> None:
        if self._fleet_stop is not None:
            self._fleet_stop.set()
        if self._fleet_task is not None:
            task = asyncio.wrap_future(self._fleet_task)
            await asyncio.gather(task, return_exceptions=True)
        for part in (self._stream, self._square, self._board):
            await part.aclose()
        await super()._ashutdown()

    def _unreachable(self, exc: BaseException) -> str:
        return (
            f"the fleet's Redis at {self._stream.location} did not answer "
            f"({type(exc).__name__}); try again in a few seconds"
        )

    async def _redis(self, coro: Awaitable[_T]) -> _T:
        try:
            return await coro
        except MoltCitiesError:
            raise
        except self._down as exc:
            raise FleetError(self._unreachable(exc)) from None
        except Exception as exc:  # e.g. an entry someone else wrote, malformed
            raise FleetError(
                f"the fleet's Redis at {self._stream.location} returned something unexpected "
                f"({type(exc).__name__}); tell the operator (retrying may not help)"
            ) from None

    # ------------------------------------------------------------------ status

    def status(self) -> ClientStatus:
        """This worker's view: the holder's channel states (``no-holder`` while nobody holds,
        ``redis-unreachable`` while Redis does not answer)."""
        view, error = self._view, self._redis_error
        channels: dict[str, ChannelStatus] = {}
        for name in ("personal", "town-square"):
            held: dict[str, Any] = (view or {}).get("channels", {}).get(name) or {}
            if error is not None:
                state, last_error = "redis-unreachable", error
            elif not held:
                state, last_error = "no-holder", None
            else:
                state, last_error = str(held.get("state", "unknown")), held.get("last_error")
            channels[name] = ChannelStatus(
                name=name,
                transport="fleet",
                state=state if self._started and not self._closed else "idle",
                last_error=last_error,
                connect_count=int(held.get("connect_count") or 0),
                online_count=held.get("online_count"),
                received=int(held.get("received") or 0),
                backfill_pending=bool(held.get("backfill_pending")),
                polling=bool(held.get("polling")),
            )
        return ClientStatus(
            started=self._started,
            closed=self._closed,
            base_url=super().status().base_url,
            transport=str((view or {}).get("transport") or "websocket"),
            agent_id=self.agent_id or (view or {}).get("agent_id"),
            handle=self.handle or (view or {}).get("handle"),
            channels=channels,
            mention_warning=(view or {}).get("mention_warning"),
        )

    # ------------------------------------------------------------------ notifications

    def read_notifications(
        self, limit: int | None = None, event_types: Sequence[str] | str | None = None
    ) -> ReadResult[NotificationFrame]:
        """Notifications for this worker's agent, through the consumer group (see module)."""
        kinds = None if event_types is None else expand_event_types(check_events(event_types))
        wanted = check_limit(limit)
        if wanted == 0:
            return ReadResult()
        count = _READ_CAP if wanted is None else min(wanted, _READ_CAP)
        return self._run(self._redis(self._aread(count, kinds)))

    async def _aread(self, count: int, kinds: list[str] | None) -> ReadResult[NotificationFrame]:
        entries = await self._stream.read(self.name, count=count)
        keep = [e for e in entries if kinds is None or e.frame.event_type in kinds]
        await self._stream.release(self.name, [e for e in entries if e not in keep])
        seen = await self._stream.shown_before([e for e in keep if e.claimed])
        await self._stream.mark_shown(keep)
        with self._fleet_lock:
            for e in keep:
                self._remember(self._shown, e.frame.id, e)
        again = frozenset(e.frame.id for e in keep if e.redelivery or e.entry_id in seen)
        return ReadResult(
            items=[e.frame for e in keep],
            remaining=await self._stream.waiting(),
            redelivered=again,
        )

    @staticmethod
    def _remember(book: OrderedDict[str, Any], key: str, value: Any) -> None:
        book[key] = value
        book.move_to_end(key)
        while len(book) > _REMEMBERED:
            book.popitem(last=False)

    def unknown_notifications(self, ids: Sequence[str]) -> list[str]:
        """Those of ``ids`` this worker's agent was never shown (or no longer remembers)."""
        with self._fleet_lock:
            return [i for i in ids if i not in self._shown and i not in self._acked]

    def ack(self, ids: str | Sequence[str]) -> None:
        """Done with these: XACK, and the holder acks them on MoltCities."""
        self._run(self._redis(self._afleet_ack(check_ids(ids))))

    async def aack(self, ids: str | Sequence[str]) -> None:
        """Async twin of :meth:`ack`."""
        await self._arun(self._redis(self._afleet_ack(check_ids(ids))))

    async def _afleet_ack(self, ids: list[str]) -> None:
        with self._fleet_lock:
            entries = [self._shown[i] for i in ids if i in self._shown]
            done = {i for i in ids if i in self._acked}
        known = {e.frame.id for e in entries}
        # Ids this worker never read (another worker's, or from elsewhere) still reach
        # MoltCities through the holder; there is no stream entry of ours to settle.
        foreign = [i for i in dict.fromkeys(ids) if i not in known and i not in done]
        await self._stream.ack(entries)
        await self._stream.forward_acks(foreign)
        with self._fleet_lock:
            for i in [*known, *foreign]:
                self._shown.pop(i, None)
                self._remember(self._acked, i, None)

    # ------------------------------------------------------------------ Town Square

    def read_town_square(
        self, limit: int | None = None, kinds: Sequence[str] | str | None = None
    ) -> ReadResult[TownItem]:
        """Chat and presence from the shared stream, after this worker's own cursor."""
        wanted = ["chat", "presence"] if kinds is None else check_town_kinds(kinds)
        self._run(self._redis(self._apull_town()))
        cap = check_limit(limit)
        with self._fleet_lock:
            pairs = (("chat", self._chat), ("presence", self._presence))
            queues = [q for k, q in pairs if k in wanted]
            # A mixed read takes chat first, then presence (each oldest first).
            items: list[TownItem] = []
            for q in queues:
                while q and (cap is None or len(items) < cap):
                    items.append(q.popleft())
            remaining = sum(len(q) for q in queues)
            dropped, self._town_dropped = self._town_dropped, 0
        return ReadResult(items=items, remaining=remaining, dropped=dropped)

    async def _apull_town(self) -> None:
        got, cursor = await self._square.read(self._cursor, self.buffer_size)
        with self._fleet_lock:
            self._cursor = cursor
            for item in got:
                if isinstance(item, ChatGap):
                    for gaps in (self._gaps, self._new_gaps):
                        gaps.append(item)
                        del gaps[:-100]  # bounded: the newest 100
                    continue
                q = self._chat if isinstance(item, ChatFrame) else self._presence
                q.append(item)
                if len(q) > self.buffer_size:
                    q.popleft()
                    self._town_dropped += 1

    def chat_gaps(self, *, unreported: bool = False) -> list[ChatGap]:
        """Town Square spans the holders' back-fills could not fill, as this worker read them
        (``unreported``: only those not returned by an earlier ``unreported=True`` call)."""
        with self._fleet_lock:
            if not unreported:
                return list(self._gaps)
            gaps, self._new_gaps = self._new_gaps, []
        return gaps

    # ------------------------------------------------------------------ subscriptions

    def subscription_status(self) -> SubscriptionState:
        """The holder's subscription, as it last said."""
        sub = (self._view or {}).get("subscription") or {}
        return SubscriptionState(
            wanted=sub.get("wanted"),
            echoed=sub.get("echoed"),
            server_filters=sub.get("server_filters"),
            filtered_out=int(sub.get("filtered_out") or 0),
        )

    def set_subscriptions(self, events: Sequence[str]) -> list[str]:
        """Ask the holder to subscribe to ``events``; waits (bounded) until it did."""
        return self._run(self._redis(self._asubscribe(check_events(events))))

    async def aset_subscriptions(self, events: Sequence[str]) -> list[str]:
        """Async twin of :meth:`set_subscriptions`."""
        return await self._arun(self._redis(self._asubscribe(check_events(events))))

    async def _asubscribe(self, events: list[str]) -> list[str]:
        version = await self._board.request_subscriptions(events)
        deadline = time.monotonic() + self.subscription_wait
        while time.monotonic() < deadline:
            view = await self._board.read()
            if view is not None and int(view.get("applied") or 0) >= version:
                self._view = view
                break
            await asyncio.sleep(0.05)
        return list(events)
