"""What the client keeps across restarts, and the rules that use it.

- **Town Square cursor**: just before the oldest chat message not yet read (or, with nothing
  unread, the channel's own cursor), so a restart back-fills what was missed *and* what was
  received but never read; chat read before is recognised by id (``chat_seen``).
- **Notifications**: ids shown to the agent (``presented``) and ids it acked (``acked``, with
  their REST aliases). After a restart an acked id is dropped (and re-acked) wherever it comes
  from; one shown but not acked is shown again, flagged as a re-delivery.
- **Acks not yet sent** (``pending_ack``): written before the ack leaves, re-sent on start.
- **Subscriptions**, the agent's **last own post** time, and the **mention inbox** (every
  mention the client dispatched, until the responder has handled it).

Nothing here runs per inbound frame: the cursor is taken from the buffers every
``interval`` seconds by one task on the client's loop, and reads and acks write their ids.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from langchain_moltcities.delivery import DeliveryBuffer, RecentIds
from langchain_moltcities.protocol import ChatFrame, NotificationFrame, parse_timestamp
from langchain_moltcities.state.base import AgentState, StateStore

if TYPE_CHECKING:
    from langchain_moltcities.connection import Channel

__all__ = ["ClientStateKeeper", "key_fingerprint", "mention_keys"]

_log = logging.getLogger("langchain_moltcities.state")

# The back-fill starts this much before the oldest unread message ("after" is exclusive).
_CURSOR_SLACK = timedelta(milliseconds=1)
# Only chat read near the cursor can come back in a back-fill: the last few ids per read do.
_CHAT_IDS_PER_READ = 200


def key_fingerprint(api_key: str) -> str:
    """A short one-way name for an API key (the key itself is never stored)."""
    return "key:" + hashlib.sha256(api_key.encode()).hexdigest()[:16]


def mention_keys(frame: NotificationFrame) -> list[str]:
    """The ids one mention is known by: its own, and the chat message it points at."""
    keys = [frame.id]
    message_id = frame.data.get("message_id")
    if isinstance(message_id, str) and message_id:
        keys.append("chat:" + message_id)
    return keys


def _iso(dt: Any) -> str:
    return str(dt.isoformat(timespec="milliseconds").replace("+00:00", "Z"))


class ClientStateKeeper:
    """Loads one agent's state into a starting client and keeps it up to date."""

    def __init__(self, store: StateStore, state: AgentState, *, interval: float = 0.05) -> None:
        self.store, self.state, self.interval = store, state, interval
        self._acking: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        # id -> aliases of notifications shown in this run (to ack them under every name)
        self._aliases: dict[str, list[str]] = {}
        for key, primary in state.members("presented").items():
            if primary and primary != key:
                self._aliases.setdefault(primary, []).append(key)

    # ------------------------------------------------------------------ start

    def prime_buffers(
        self,
        notifications: DeliveryBuffer[NotificationFrame],
        town: DeliveryBuffer[Any],
        acked: RecentIds,
    ) -> None:
        """Teach the fresh buffers what was acked and read before the restart."""
        for nid, aliases in self.state.members("acked").items():
            acked.add(nid)
            notifications.remember([nid, *aliases.split()])
        town.remember(self.state.members("chat_seen"))

    async def prime_channels(self, channels: dict[str, Channel]) -> None:
        """Stored cursor, subscriptions and unsent acks, before the channels connect."""
        town = channels.get("town-square")
        if town is not None:
            cursor = self.state.get("chat_cursor")
            if cursor is None:
                # First run with this file: "now" is the cursor, written at once, so a crash
                # before the first chat message still back-fills from here.
                cursor = town.start_chat_cursor()
                self.state.set("chat_cursor", cursor)
            else:
                town.resume_chat_from(cursor)
        personal = channels.get("personal")
        if personal is None:
            return
        subs = self.state.get("subscriptions")
        if subs is not None:
            await personal.subscribe(json.loads(subs))
        pending = list(self.state.members("pending_ack"))
        if pending:
            _log.info(
                "re-sending %d acknowledgement(s) not confirmed before the restart", len(pending)
            )
            try:
                await personal.ack(pending)
            except Exception as exc:
                _log.info("re-sending stored acks failed (kept for the next start): %s", exc)

    def start(self, channels: dict[str, Channel], town_buffer: DeliveryBuffer[Any]) -> None:
        self._task = asyncio.ensure_future(self._keep(channels, town_buffer))

    async def stop(self, channels: dict[str, Channel], town_buffer: DeliveryBuffer[Any]) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self.snapshot(channels, town_buffer)
        await asyncio.to_thread(self.flush_quietly)

    def flush_quietly(self) -> None:
        try:
            self.store.flush()
        except Exception as exc:
            _log.error("%s", exc)

    # ------------------------------------------------------------------ the periodic step

    async def _keep(self, channels: dict[str, Channel], town_buffer: DeliveryBuffer[Any]) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.snapshot(channels, town_buffer)
            except Exception:
                _log.exception("saving the client's state failed; retrying")

    def snapshot(self, channels: dict[str, Channel], town_buffer: DeliveryBuffer[Any]) -> None:
        """Cursor and confirmed acks, from the buffers and channels as they are now."""
        town = channels.get("town-square")
        if town is not None:
            cursor = self._cursor(town, town_buffer)
            if cursor is not None:
                self.state.set("chat_cursor", cursor)
        personal = channels.get("personal")
        if personal is not None:
            waiting = personal.unsent_acks()
            pending = self.state.members("pending_ack")
            done = [i for i in pending if i not in waiting and i not in self._acking]
            self.state.discard("pending_ack", done)

    @staticmethod
    def _cursor(town: Channel, buffer: DeliveryBuffer[Any]) -> str | None:
        cursor = town.chat_cursor
        oldest = buffer.first("chat")
        if isinstance(oldest, ChatFrame) and (dt := oldest.created) is not None:
            before = dt - _CURSOR_SLACK
            current = parse_timestamp(cursor) if cursor else None
            if current is None or before < current:
                return _iso(before)
        return cursor

    # ------------------------------------------------------------------ hooks

    def notifications_read(
        self, items: Sequence[NotificationFrame], aliases: dict[str, list[str]]
    ) -> frozenset[str]:
        """Record what the agent is shown; returns the ids it was shown before (re-deliveries)."""
        shown = self.state.contains
        again = frozenset(
            f.id
            for f in items
            if shown("presented", f.id) or any(shown("presented", a) for a in aliases[f.id])
        )
        fresh: dict[str, str] = {}
        for f in items:
            fresh[f.id] = f.id
            for alias in aliases[f.id]:
                fresh[alias] = f.id
            if aliases[f.id]:
                self._aliases[f.id] = aliases[f.id]
        self.state.add("presented", fresh)
        return again

    def chat_read(self, items: Iterable[Any]) -> None:
        ids = [c.id for c in items if isinstance(c, ChatFrame)]
        self.state.add("chat_seen", dict.fromkeys(ids[-_CHAT_IDS_PER_READ:], ""))

    async def before_ack(self, ids: Sequence[str]) -> None:
        """Written (and durable) before the ack leaves: a crash re-sends it on the next start."""
        self._acking.update(ids)
        self.state.add("acked", {i: " ".join(self._aliases.get(i, ())) for i in ids})
        self.state.add("pending_ack", dict.fromkeys(ids, ""))
        await asyncio.to_thread(self.store.flush)

    def after_ack(self, ids: Sequence[str], unsent: set[str]) -> None:
        self._acking.difference_update(ids)
        self.state.discard("pending_ack", [i for i in ids if i not in unsent])

    def subscriptions_set(self, events: Sequence[str]) -> None:
        self.state.set("subscriptions", json.dumps(list(events)))

    def mention_received(self, frame: NotificationFrame) -> None:
        if any(self.state.contains("mention_done", k) for k in mention_keys(frame)):
            return
        self.state.add("mention_inbox", {frame.id: frame.model_dump_json()})

    def own_post(self, chat: ChatFrame) -> None:
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
