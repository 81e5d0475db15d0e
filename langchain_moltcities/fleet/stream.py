"""Work sharing over a Redis Stream: each delivered item goes to exactly one worker's agent.

The holder appends each notification it receives (``XADD ... MAXLEN ~``); every worker reads
through one consumer group (``XREADGROUP``), so an entry is handed to one consumer only. A
worker acks when its agent has handled the item: ``XACK`` plus the MoltCities id pushed onto
the identity's ack list, which the holder drains and sends to MoltCities over its socket (see
:mod:`.bridge`). An entry read and never acked (its worker died mid-turn) is claimed by another
worker once it has been idle ``visibility_timeout`` seconds (``XAUTOCLAIM``): nothing is lost,
and an item is handled twice only if a worker dies between its turn and its ack.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from langchain_moltcities.acks import rest_aliases
from langchain_moltcities.errors import MoltCitiesError
from langchain_moltcities.protocol import NotificationFrame
from langchain_moltcities.recovered import chat_key
from langchain_moltcities.state.redis import agent_key, redact_url

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = ["StreamEntry", "WorkStream"]

# KEYS: stream, the id's "appended" marker. ARGV: maxlen, marker ttl ms, id, frame, redelivery.
_APPEND = """
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) then
  return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*',
                    'id', ARGV[3], 'frame', ARGV[4], 'redelivery', ARGV[5])
end
return false
"""

# KEYS: stream, ack list. ARGV: group, then (entry id, MoltCities id, REST id or "") triples.
# Queues the ids for the holder only if this XACK is the one that settled the entry.
_ACK = """
local n = 0
for i = 2, #ARGV, 3 do
  if redis.call('XACK', KEYS[1], ARGV[1], ARGV[i]) == 1 then
    redis.call('RPUSH', KEYS[2], ARGV[i + 1])
    if ARGV[i + 2] ~= '' then
      redis.call('RPUSH', KEYS[2], ARGV[i + 2])
    end
    n = n + 1
  end
end
return n
"""


# KEYS: ack list, holder lease. ARGV: count, the lease token the caller holds by.
# The holder that sent the acks trims them only if the lease is still its own: a holder that
# was frozen past its lease (its client displaced, its acks maybe only queued there) must
# leave them for its successor to send again.
_DROP_ACKS = """
if redis.call('GET', KEYS[2]) == ARGV[2] then
  redis.call('LTRIM', KEYS[1], ARGV[1], -1)
  return 1
end
return 0
"""


def _rest_id(frame: NotificationFrame) -> str:
    """The REST id that marks a live-dialect notification read ("" for none or documented).

    The live server's socket ack marks nothing read; a holder that never received the item
    (its predecessor did) could not tell the REST id from the socket id alone.
    """
    if frame.agent_id is None:
        return ""  # documented: the socket ack marks it read
    aliases = rest_aliases(frame)
    return aliases[0] if aliases else ""


def _item_key(frame: NotificationFrame) -> str:
    """What makes two notifications one item: a chat mention is known by its chat message,
    whether the server raised it or a client recovered it from the chat (a new holder may see
    both, under two ids); a live message or guestbook entry by its REST id."""
    cid = frame.chat_message_id if frame.is_mention else None
    if cid:
        return chat_key(cid)
    # A live socket item and the same item listed over REST (a new holder's catch-up) have
    # two ids; the REST id is the one both know.
    return _rest_id(frame) or frame.id


@dataclass(frozen=True)
class StreamEntry:
    """One item as a worker reads it. ``claimed``: taken over from a worker that never acked."""

    entry_id: str
    frame: NotificationFrame
    redelivery: bool
    claimed: bool


class WorkStream:
    """One identity's notification stream and its consumer group."""

    def __init__(
        self,
        url: str,
        identity: str,
        *,
        group: str = "workers",
        maxlen: int = 10_000,
        visibility_timeout: float = 30.0,
        prefix: str = "moltcities",
        dedupe_ttl: float = 24 * 3600,
    ) -> None:
        try:
            import redis.asyncio as aioredis
        except ImportError:
            raise MoltCitiesError(
                'the work stream needs the redis package: pip install "langchain-moltcities[redis]"'
            ) from None
        self.identity, self.group, self.maxlen = identity, group, maxlen
        self.visibility_timeout, self.dedupe_ttl = visibility_timeout, dedupe_ttl
        self.prefix = prefix
        self.key = agent_key(prefix, identity, "notifications")
        self.acks_key = agent_key(prefix, identity, "acks")
        self.location = redact_url(url)
        self._redis: aioredis.Redis = aioredis.Redis.from_url(url, decode_responses=True)
        self._response_error: type[BaseException] = aioredis.ResponseError
        self._group_ready = False
        # Per consumer, where its next XAUTOCLAIM scan starts: entries handed back (release)
        # and left pending must not hide the ones behind them from every scan.
        self._claim_from: dict[str, str] = {}
        self._ack = self._redis.register_script(_ACK)
        self._append = self._redis.register_script(_APPEND)
        self._drop_acks = self._redis.register_script(_DROP_ACKS)

    def _marker(self, frame: NotificationFrame) -> str:
        return agent_key(self.prefix, self.identity, "appended", _item_key(frame))

    def __repr__(self) -> str:
        return f"WorkStream({self.identity!r}, {self.location!r})"

    async def ensure_group(self) -> None:
        """Create the stream and its group (from the start of the stream) if missing."""
        if self._group_ready:
            return
        try:
            await self._redis.xgroup_create(self.key, self.group, id="0", mkstream=True)
        except self._response_error as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    # ------------------------------------------------------------------ the holder's side

    async def append(self, frame: NotificationFrame, *, redelivery: bool = False) -> str | None:
        """Add one delivered item, unless this MoltCities id was appended before (within
        ``dedupe_ttl``: a new holder is sent again what its predecessor had appended). The
        stream keeps about ``maxlen`` entries (oldest trimmed). Returns the entry id or None.
        """
        await self.ensure_group()
        got = await self._append(
            keys=[self.key, self._marker(frame)],
            args=[
                self.maxlen,
                int(self.dedupe_ttl * 1000),
                frame.id,
                frame.model_dump_json(),
                "1" if redelivery else "0",
            ],
        )
        return None if got is None else str(got)

    async def append_many(self, items: list[tuple[NotificationFrame, bool]]) -> int:
        """:meth:`append` for a batch (frame, redelivery) in one round trip; how many were new.

        Safe to repeat after a failure: ids already appended are skipped.
        """
        if not items:
            return 0
        await self.ensure_group()
        pipe = self._redis.pipeline(transaction=False)
        for frame, redelivery in items:
            await self._append(
                keys=[self.key, self._marker(frame)],
                args=[
                    self.maxlen,
                    int(self.dedupe_ttl * 1000),
                    frame.id,
                    frame.model_dump_json(),
                    "1" if redelivery else "0",
                ],
                client=pipe,
            )
        replies = await pipe.execute()
        return sum(1 for r in replies if r is not None)

    async def peek_acks(self, count: int = 500) -> list[str]:
        """The oldest MoltCities ids that workers acked (the holder sends, then drops them)."""
        got = await self._redis.lrange(self.acks_key, 0, count - 1)
        return [str(i) for i in got]

    async def drop_acks(self, count: int, *, lease: tuple[str, str] | None = None) -> bool:
        """Forget the ``count`` oldest acked ids (they reached MoltCities). Only the holder
        calls this, and a holder that dies before it only makes its successor re-send them.

        ``lease``: (key, token) of the caller's :class:`~.lease.HolderLease`; the ids are then
        dropped only if that token still holds the key (one atomic step), and False says they
        were left for the holder that took over. Acking an id twice is harmless; an ack lost
        because a stale holder's socket could not send it is not.
        """
        if lease is None:
            await self._redis.ltrim(self.acks_key, count, -1)
            return True
        key, token = lease
        return bool(await self._drop_acks(keys=[self.acks_key, key], args=[count, token]))

    # ------------------------------------------------------------------ a worker's side

    async def read(
        self, consumer: str, count: int = 10, block: float | None = None
    ) -> list[StreamEntry]:
        """Up to ``count`` entries for ``consumer``: stale ones first (claimed), then new ones.

        ``block``: wait up to this many seconds for new entries when there are none.
        """
        try:
            return await self._read(consumer, count, block)
        except self._response_error as exc:
            if "NOGROUP" not in str(exc):
                raise
            # Redis restarted without its data (or the stream was deleted): make the group anew.
            self._group_ready = False
            return await self._read(consumer, count, block)

    async def _read(self, consumer: str, count: int, block: float | None) -> list[StreamEntry]:
        await self.ensure_group()
        out: list[StreamEntry] = []
        reply: Any = await self._redis.xautoclaim(
            self.key,
            self.group,
            consumer,
            min_idle_time=int(self.visibility_timeout * 1000),
            start_id=self._claim_from.get(consumer, "0-0"),
            count=count,
        )
        self._claim_from[consumer] = str(reply[0])
        claimed: list[tuple[str, dict[str, str] | None]] = reply[1]
        out += [self._entry(eid, fields, claimed=True) for eid, fields in claimed if fields]
        if len(out) < count:
            block_ms = None if block is None else max(1, int(block * 1000))
            fresh: Any = await self._redis.xreadgroup(
                self.group, consumer, {self.key: ">"}, count=count - len(out), block=block_ms
            )
            for _stream, entries in fresh or []:
                out += [self._entry(eid, fields, claimed=False) for eid, fields in entries]
        return out

    def _entry(self, entry_id: str, fields: dict[str, str], *, claimed: bool) -> StreamEntry:
        frame = NotificationFrame.model_validate(json.loads(fields["frame"]))
        return StreamEntry(entry_id, frame, fields.get("redelivery") == "1", claimed)

    async def ack(self, entries: list[StreamEntry]) -> int:
        """Done with these: XACK them and queue their MoltCities ids (and a live item's REST
        id) for the holder to send.

        Atomic per call, and an entry already acked (by a worker that claimed it too) is not
        queued again. Returns how many this call acked.
        """
        if not entries:
            return 0
        args: list[str] = [self.group]
        for e in entries:
            args += [e.entry_id, e.frame.id, _rest_id(e.frame)]
        return int(await self._ack(keys=[self.key, self.acks_key], args=args))

    async def release(self, consumer: str, entries: list[StreamEntry]) -> None:
        """Hand back entries ``consumer`` read but will not handle (e.g. not the event types
        its agent asked for): they can be claimed by any worker at once (``XCLAIM ... IDLE``)
        instead of after the visibility timeout."""
        if entries:
            await self._redis.xclaim(
                self.key,
                self.group,
                consumer,
                0,
                [e.entry_id for e in entries],
                idle=int(self.visibility_timeout * 1000) + 1,
                justid=True,
            )

    def _shown_key(self, entry_id: str) -> str:
        return agent_key(self.prefix, self.identity, "shown", entry_id)

    async def mark_shown(self, entries: list[StreamEntry]) -> None:
        """Note that an agent saw these (expires with ``dedupe_ttl``), so a worker that claims
        one later can say it is shown again, not for the first time."""
        if entries:
            pipe = self._redis.pipeline(transaction=False)
            for e in entries:
                pipe.set(self._shown_key(e.entry_id), "1", px=int(self.dedupe_ttl * 1000))
            await pipe.execute()

    async def shown_before(self, entries: list[StreamEntry]) -> set[str]:
        """Entry ids among ``entries`` that an agent saw before (see :meth:`mark_shown`)."""
        if not entries:
            return set()
        pipe = self._redis.pipeline(transaction=False)
        for e in entries:
            pipe.exists(self._shown_key(e.entry_id))
        found = await pipe.execute()
        return {e.entry_id for e, n in zip(entries, found, strict=True) if n}

    async def waiting(self) -> int:
        """Entries no worker has read yet (the group's lag; 0 when the server cannot say)."""
        await self.ensure_group()
        groups: Any = await self._redis.xinfo_groups(self.key)
        for g in groups:
            if g.get("name") == self.group:
                return int(g.get("lag") or 0)
        return 0

    async def forward_acks(self, ids: list[str]) -> None:
        """Queue MoltCities ids for the holder to ack without a stream entry to settle (ids
        this worker never read from the stream)."""
        if ids:
            await self._redis.rpush(self.acks_key, *ids)

    async def pending(self) -> int:
        """Entries read by some worker and not yet acked."""
        await self.ensure_group()
        info = await self._redis.xpending(self.key, self.group)
        return int(info["pending"])

    async def aclose(self) -> None:
        """Release what the stream holds open."""
        await self._redis.aclose()
