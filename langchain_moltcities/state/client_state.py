"""What the client keeps across restarts, and the rules that use it.

- **Town Square cursor**: just before the oldest chat message not yet read (or, with nothing
  unread, the channel's own cursor), so a restart back-fills what was missed *and* what was
  received but never read; chat read before is recognised by id (``chat_seen``).
- **Notifications**: ids shown to the agent (``presented``) and ids it acked (``acked``, with
  their REST aliases). After a restart an acked id is dropped (and re-acked) wherever it comes
  from; one shown but not acked is shown again, flagged as a re-delivery.
- **Notifications delivered and not acked** (``unread``, see :mod:`.unread`): presented again
  after a restart until acked, since the live server keeps no copy of a push.
- **Acks not yet sent** (``pending_ack``): written before the ack leaves, re-sent on start.
- **Subscriptions**, the agent's **last own post** time, and the **mention inbox** (every
  mention the client dispatched, until the responder has handled it).

Per inbound frame only a ``deque.append`` runs (:meth:`UnreadKeeper.arrived`): the cursor is
taken from the buffers, and arrived notifications stored, every ``interval`` seconds by one
task on the client's loop; reads and acks write their ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from langchain_moltcities.acks import AckBook
from langchain_moltcities.catchup import ChatGap
from langchain_moltcities.delivery import DeliveryBuffer
from langchain_moltcities.protocol import ChatFrame, NotificationFrame, parse_timestamp
from langchain_moltcities.recovered import chat_key
from langchain_moltcities.state.base import AgentState, StateStore
from langchain_moltcities.state.unread import UnreadKeeper

if TYPE_CHECKING:
    from langchain_moltcities.connection import Channel
    from langchain_moltcities.ingest import Ingest

__all__ = ["ClientStateKeeper", "key_fingerprint", "mention_keys"]

_log = logging.getLogger("langchain_moltcities.state")

# The back-fill starts this much before the oldest unread message ("after" is exclusive).
_CURSOR_SLACK = timedelta(milliseconds=1)
# How long a read waits for what it returns to be stored (a store that is down: logged).
_READ_FLUSH_TIMEOUT = 2.0
# Only chat read near the cursor can come back in a back-fill: the last few ids per read do.
_CHAT_IDS_PER_READ = 200


def key_fingerprint(api_key: str) -> str:
    """A short one-way name for an API key (the key itself is never stored)."""
    return "key:" + hashlib.sha256(api_key.encode()).hexdigest()[:16]


def mention_keys(frame: NotificationFrame) -> list[str]:
    """The ids one mention is known by: its own, and the chat message it points at."""
    cid = frame.chat_message_id
    return list(dict.fromkeys([frame.id, chat_key(cid)])) if cid else [frame.id]


def _iso(dt: Any) -> str:
    return str(dt.isoformat(timespec="milliseconds").replace("+00:00", "Z"))


class ClientStateKeeper:
    """Loads one agent's state into a starting client and keeps it up to date."""

    def __init__(
        self,
        store: StateStore,
        state: AgentState,
        *,
        unconfirmed: Callable[[Collection[str]], set[str]],
        interval: float = 0.05,
        max_item_bytes: int = 64 << 10,
    ) -> None:
        self.store, self.state, self.interval = store, state, interval
        self.unread = UnreadKeeper(state, max_item_bytes=max_item_bytes)
        self._unconfirmed = unconfirmed
        self._acking: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._ticks = 0

    # ------------------------------------------------------------------ start

    def prime_ingest(self, ingest: Ingest) -> None:
        """Teach the fresh client what was acked, read and learned before the restart."""
        ingest.acks.restore({nid: v.split() for nid, v in self.state.members("acked").items()})
        ingest.town.remember(self.state.members("chat_seen"))
        ingest.directory.restore(self.state.members("handle"))

    def prime_channels(self, channels: dict[str, Channel]) -> list[str]:
        """Stored cursor and gaps, before the channels connect; returns the acks to re-send."""
        town = channels.get("town-square")
        if town is not None:
            cursor = self.state.get("chat_cursor")
            if cursor is None or not town.chat.resume(cursor):
                # First run with this file: "now" is the cursor, written at once, so a crash
                # before the first chat message still back-fills from here.
                town.chat.start_now()
                self.state.set("chat_cursor", town.chat.cursor)
            for raw in self.state.members("gap"):
                with contextlib.suppress(ValueError, TypeError):
                    town.chat.gaps.append(ChatGap(**json.loads(raw)))
        pending = list(self.state.members("pending_ack"))
        if pending:
            _log.info("re-sending %d ack(s) not confirmed before the restart", len(pending))
        return pending

    def stored_notifications(self) -> list[tuple[NotificationFrame, bytes]]:
        """Notifications delivered before the restart and never acked, to offer again."""
        return self.unread.stored()

    def stored_subscriptions(self) -> list[str] | None:
        """The subscriptions a previous run asked for, if stored."""
        raw = self.state.get("subscriptions")
        try:
            subs = json.loads(raw) if raw is not None else None
        except ValueError:
            return None
        return [str(e) for e in subs] if isinstance(subs, list) else None

    def start(
        self, channels: dict[str, Channel], town_buffer: DeliveryBuffer[Any], ingest: Ingest
    ) -> None:
        """Start keeping the client's state in the background."""
        self._task = asyncio.ensure_future(self._keep(channels, town_buffer, ingest))

    async def stop(
        self, channels: dict[str, Channel], town_buffer: DeliveryBuffer[Any], ingest: Ingest
    ) -> None:
        """Stop keeping state and store what is left."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self.snapshot(channels, town_buffer, ingest, everything=True)
        await asyncio.to_thread(self.flush_quietly)

    def flush_quietly(self, timeout: float = 10.0) -> None:
        """Store what is pending; an error is logged, never raised."""
        try:
            self.store.flush(timeout)
        except Exception as exc:
            _log.error("%s", exc)

    # ------------------------------------------------------------------ the periodic step

    async def _keep(
        self, channels: dict[str, Channel], town_buffer: DeliveryBuffer[Any], ingest: Ingest
    ) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self._ticks += 1
            try:
                self.snapshot(channels, town_buffer, ingest, everything=self._ticks % 20 == 0)
            except Exception:
                _log.exception("saving the client's state failed; retrying")

    def snapshot(
        self,
        channels: dict[str, Channel],
        town_buffer: DeliveryBuffer[Any],
        ingest: Ingest,
        *,
        everything: bool = False,
    ) -> None:
        """Arrived notifications, cursor, gaps and confirmed acks (and, now and then, the
        handle directory)."""
        if self.unread.save():
            self.store.nudge()  # this tick is the batch: commit now, not a window later
        town = channels.get("town-square")
        if town is not None:
            cursor = self._cursor(town.chat.cursor, town_buffer)
            if cursor is not None:
                self.state.set("chat_cursor", cursor)
            gaps = {json.dumps(g.as_dict(), sort_keys=True): "" for g in town.chat.gaps}
            self.state.add("gap", gaps)
        pending = [i for i in self.state.members("pending_ack") if i not in self._acking]
        if pending:
            waiting = self._unconfirmed(pending)
            self.state.discard("pending_ack", [i for i in pending if i not in waiting])
        if everything:
            self.state.add("handle", ingest.directory.snapshot())

    @staticmethod
    def _cursor(cursor: str | None, buffer: DeliveryBuffer[Any]) -> str | None:
        oldest = buffer.first("chat")
        if isinstance(oldest, ChatFrame) and (dt := oldest.created) is not None:
            before = dt - _CURSOR_SLACK
            current = parse_timestamp(cursor) if cursor else None
            if current is None or before < current:
                return _iso(before)
        return cursor

    # ------------------------------------------------------------------ hooks

    def notifications_read(
        self, items: Sequence[NotificationFrame], book: AckBook, *, durable: bool = False
    ) -> frozenset[str]:
        """Record what the agent is shown; returns the ids it was shown before (re-deliveries).

        ``durable``: wait until the items and the fact they were shown are stored (a reader's
        thread may wait; the client's loop must not), so a crash after this read presents
        them again, flagged, whatever the write-behind window.
        """
        self.unread.keep(items)
        shown = self.state.contains
        fresh: dict[str, str] = {}
        again: set[str] = set()
        for f in items:
            keys = [f.id, *book.rest_ids_for([f.id])]
            if f.chat_message_id:
                keys.append(chat_key(f.chat_message_id))
            if any(shown("presented", k) for k in keys):
                again.add(f.id)
            fresh.update(dict.fromkeys(keys, f.id))
        self.state.add("presented", fresh)
        if durable and self.store.persistent:
            # Bounded: a store that is down (Redis) delays a read by this much, never more.
            self.flush_quietly(_READ_FLUSH_TIMEOUT)
        return frozenset(again)

    def chat_read(self, items: Iterable[Any]) -> None:
        """The agent read these Town Square items."""
        ids = [c.id for c in items if isinstance(c, ChatFrame)]
        self.state.add("chat_seen", dict.fromkeys(ids[-_CHAT_IDS_PER_READ:], ""))

    async def before_ack(self, ids: Sequence[str], book: AckBook) -> None:
        """Written (and durable) before the ack leaves: a crash re-sends it on the next start."""
        self._acking.update(ids)
        self.state.add("acked", {i: " ".join(book.rest_ids_for([i])) for i in ids})
        self.unread.acked(ids)
        self.state.add("pending_ack", dict.fromkeys(ids, ""))
        if self.store.persistent:
            await asyncio.to_thread(self.store.flush)

    def after_ack(self, ids: Sequence[str]) -> None:
        """These acks went out: forget them as in flight."""
        self._acking.difference_update(ids)
        waiting = self._unconfirmed(ids)
        self.state.discard("pending_ack", [i for i in ids if i not in waiting])

    def subscriptions_set(self, events: Sequence[str]) -> None:
        """The agent asked for these subscriptions."""
        self.state.set("subscriptions", json.dumps(list(events)))

    def mention_received(self, frame: NotificationFrame) -> None:
        """A mention arrived: keep it until it is handled."""
        if any(self.state.contains("mention_done", k) for k in mention_keys(frame)):
            return
        self.state.add("mention_inbox", {frame.id: frame.model_dump_json()})

    def own_post(self, chat: ChatFrame) -> None:
        """The agent posted ``chat``: remember when."""
        if chat.created_at:
            self.state.set("last_post_at", chat.created_at)


async def resolve_agent_key(
    store: StateStore, api_key: str, me: Callable[[], Awaitable[Any]]
) -> AgentState:
    """Open the agent's state under its agent id.

    A persistent store asks ``GET /api/me`` (once, bounded by the request timeout); when the
    server can't say, the id stored for this key last time is used, else the key's
    fingerprint (and a later run that learns the id keeps using what it finds there).
    """
    fingerprint = key_fingerprint(api_key)
    if not store.persistent:
        return store.agent(fingerprint)
    index = store.agent("")
    agent_id: str | None = None
    try:
        reply = await me()
        agent_id = reply.agent.id
    except Exception as exc:
        _log.info("state: GET /api/me failed (%s); using the agent id stored for this key", exc)
    if agent_id:
        if index.get(fingerprint) != agent_id:
            index.set(fingerprint, agent_id)
    else:
        agent_id = index.get(fingerprint) or fingerprint
    return await asyncio.to_thread(store.agent, agent_id)
