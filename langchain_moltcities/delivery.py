"""Bounded buffers with a read cursor, de-duplication by id, and drop counters.

Pure and thread-safe: the socket side offers items from the client's loop thread while
consumers read from any thread. This is the one place that decides "seen once".

Given a :class:`Codec`, a buffer holds each item packed as bytes (the client holds frames as
their JSON, see :mod:`holding`): a deep buffer then costs little more than those bytes, the
garbage collector never walks it, and it can be bounded in bytes as well as in count.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["BufferCounters", "Codec", "DeliveryBuffer", "ReadResult", "RecentIds"]

T = TypeVar("T")

_log = logging.getLogger("langchain_moltcities.delivery")


class Codec(Protocol[T]):
    """Packs an item to the bytes a buffer holds, and back."""

    max_item_bytes: int

    def pack(self, item: T, raw: bytes | None) -> tuple[bytes, bool]:
        """Bytes of at most ``max_item_bytes`` for ``item`` (``raw``: what arrived, if known)
        and whether the item had to be cut to fit."""
        ...

    def unpack(self, held: bytes) -> T:
        """The item back from its held bytes."""
        ...


@dataclass(frozen=True)
class ReadResult(Generic[T]):
    """What one read returns.

    ``items`` oldest first; ``remaining`` unread items left after this read that the same
    read (same kinds) would return;
    ``dropped`` items lost to overflow since the previous read; ``redelivered`` ids of items
    shown before a restart and not acknowledged (with a persistent ``state``).
    """

    items: list[T] = field(default_factory=list)
    remaining: int = 0
    dropped: int = 0
    redelivered: frozenset[str] = frozenset()


@dataclass(frozen=True)
class BufferCounters:
    """A buffer's counters: received, duplicates dropped, overflow dropped, pending."""

    received: int
    duplicates_dropped: int
    overflow_dropped: int
    pending: int
    held_bytes: int = 0
    truncated: int = 0


class RecentIds:
    """A bounded, insertion-ordered memory of ids (oldest forgotten first). Not thread-safe."""

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, item_id: str) -> None:
        """Remember ``item_id`` (the oldest is forgotten beyond the capacity)."""
        ids = self._ids
        if item_id in ids:
            ids.move_to_end(item_id)
            return
        ids[item_id] = None
        if len(ids) > self.capacity:
            ids.popitem(last=False)

    def forget(self, item_id: str) -> None:
        """Forget ``item_id`` (no error if unknown)."""
        self._ids.pop(item_id, None)


class DeliveryBuffer(Generic[T]):
    """Unread items, oldest first, bounded by ``capacity`` (and ``max_bytes``, with a codec).

    - :meth:`offer` drops an item whose id was seen recently (counted as a duplicate).
    - On overflow (too many items, or too many bytes held) the oldest unread items are
      dropped and counted; their ids are forgotten so a later redelivery (the server re-sends
      unacked notifications) is delivered, not swallowed.
    - With a codec, an item larger than the codec's ``max_item_bytes`` is held cut short
      (the codec says how; counted as ``truncated``), never dropped for its size.
    - The first drop of an overflow episode is logged once; the episode ends at the next read.
    - :meth:`read` returns unread items (optionally only some kinds) and removes them; items
      of other kinds stay unread.
    """

    def __init__(
        self,
        capacity: int,
        *,
        dedupe_memory: int = 10_000,
        name: str = "buffer",
        codec: Codec[T] | None = None,
        max_bytes: int | None = None,
    ) -> None:
        if capacity <= 0:
            raise ValueError("buffer capacity must be positive")
        if max_bytes is not None and (codec is None or max_bytes < codec.max_item_bytes):
            raise ValueError("max_bytes needs a codec and must hold at least one whole item")
        self.capacity = capacity
        self.name = name
        self.max_bytes = max_bytes
        self._codec = codec
        self._max_item = codec.max_item_bytes if codec is not None else 0
        self._byte_cap = max_bytes if max_bytes is not None else sys.maxsize
        self._lock = threading.Lock()
        # Each unread entry is (item or its packed bytes, the ids it is known by, its kind): a
        # bare tuple, not a class, because one is made per inbound item, on the hot path. The
        # ids are one str for the common item known by one id (no tuple per item).
        self._unread: deque[tuple[Any, str | tuple[str, ...], str]] = deque()
        self._bytes = 0
        self._truncated = 0
        self._seen = RecentIds(max(dedupe_memory, capacity))
        self._seen_capacity = self._seen.capacity
        self._received = 0
        self._duplicates = 0
        self._overflow = 0
        self._dropped_since_read = 0
        self.on_new: Callable[[T], None] | None = None
        """Called (outside the lock) with each item accepted: the client's event streams."""

    def offer(
        self,
        item: T,
        *,
        item_id: str | None,
        kind: str,
        aliases: Sequence[str] = (),
        raw: bytes | None = None,
    ) -> bool:
        """Add ``item``; False if it was a duplicate and dropped. Items without id are kept.

        ``aliases`` are other (non-empty) ids the same item is known by (e.g. its REST id): a
        later item with any of them is a duplicate too. ``raw`` is the item as it arrived
        (bytes the codec unpacks), held as-is when it fits: no packing cost.
        """
        if aliases:
            keys: tuple[str, ...] = (item_id, *aliases) if item_id is not None else tuple(aliases)
        else:
            keys = (item_id,) if item_id is not None else ()
        # Called for every inbound item: plain loops over locals, no generators, no calls.
        with self._lock:
            # RecentIds' dict used in place.
            seen = self._seen._ids
            if keys:
                for k in keys:
                    if k in seen:
                        self._duplicates += 1
                        return False
                for k in keys:
                    seen[k] = None
                if len(seen) > self._seen_capacity:
                    while len(seen) > self._seen_capacity:
                        seen.popitem(last=False)
            self._received += 1
            unread = self._unread
            codec = self._codec
            held_ids = keys[0] if len(keys) == 1 else keys
            if codec is None:
                unread.append((item, held_ids, kind))
            else:
                if raw is None or len(raw) > self._max_item:
                    raw, cut = codec.pack(item, raw)
                    if cut:
                        self._truncated += 1
                unread.append((raw, held_ids, kind))
                self._bytes += len(raw)
            capacity, byte_cap = self.capacity, self._byte_cap
            while len(unread) > capacity or self._bytes > byte_cap:
                held, old_keys, _ = unread.popleft()
                if codec is not None:
                    self._bytes -= len(held)
                if type(old_keys) is str:
                    seen.pop(old_keys, None)
                else:
                    for k in old_keys:
                        seen.pop(k, None)
                self._overflow += 1
                self._dropped_since_read += 1
                if self._dropped_since_read == 1:
                    self._warn_full()
        if self.on_new is not None:
            self.on_new(item)
        return True

    def _warn_full(self) -> None:
        _log.warning(
            "%s buffer full (%d unread, %d bytes held): dropping the oldest items until the "
            "next read; read more often or raise buffer_size (or buffer_max_bytes)",
            self.name,
            len(self._unread),
            self._bytes,
        )

    def read(self, limit: int | None = None, kinds: Collection[str] | None = None) -> ReadResult[T]:
        """Take up to ``limit`` unread items (of ``kinds`` if given), oldest first."""
        if limit is not None and limit < 0:
            raise ValueError("limit must be zero or positive")
        wanted = set(kinds) if kinds is not None else None
        with self._lock:
            held: list[Any] = []
            kept: deque[tuple[Any, str | tuple[str, ...], str]] = deque()
            for entry in self._unread:
                if (limit is None or len(held) < limit) and (wanted is None or entry[2] in wanted):
                    held.append(entry[0])
                else:
                    kept.append(entry)
            self._unread = kept
            remaining = (
                len(kept) if wanted is None else sum(1 for entry in kept if entry[2] in wanted)
            )
            dropped = self._dropped_since_read
            if dropped:
                _log.info("%s buffer: %d items were dropped for overflow", self.name, dropped)
            self._dropped_since_read = 0
            codec = self._codec
            if codec is not None:
                self._bytes -= sum(map(len, held))
        # Unpacked outside the lock: the socket side keeps offering meanwhile.
        taken: list[T] = held if codec is None else [codec.unpack(h) for h in held]
        return ReadResult(items=taken, remaining=remaining, dropped=dropped)

    def pending(self) -> int:
        """How many items wait unread."""
        with self._lock:
            return len(self._unread)

    def remember(self, ids: Collection[str]) -> None:
        """Treat ``ids`` as seen (e.g. what a previous run already delivered)."""
        with self._lock:
            for item_id in ids:
                self._seen.add(item_id)

    def first(self, kind: str) -> T | None:
        """The oldest unread item of ``kind``, left unread."""
        with self._lock:
            for held, _, k in self._unread:
                if k == kind:
                    return held if self._codec is None else self._codec.unpack(held)
            return None

    def seen(self, item_id: str) -> bool:
        """Whether an item known by ``item_id`` arrived (within the dedupe memory)."""
        with self._lock:
            return item_id in self._seen

    def counters(self) -> BufferCounters:
        """A snapshot of the counters."""
        with self._lock:
            return BufferCounters(
                received=self._received,
                duplicates_dropped=self._duplicates,
                overflow_dropped=self._overflow,
                pending=len(self._unread),
                held_bytes=self._bytes,
                truncated=self._truncated,
            )
