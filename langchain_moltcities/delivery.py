"""Bounded buffers with a read cursor, de-duplication by id, and drop counters.

Pure and thread-safe: the socket side offers items from the client's loop thread while
consumers read from any thread. This is the one place that decides "seen once".
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["BufferCounters", "DeliveryBuffer", "ReadResult", "RecentIds"]

T = TypeVar("T")

_log = logging.getLogger("langchain_moltcities.delivery")


@dataclass(frozen=True)
class ReadResult(Generic[T]):
    """What one read returns.

    ``items`` oldest first; ``remaining`` unread items left after this read that the same
    read (same kinds) would return;
    ``dropped`` items lost to overflow since the previous read.
    """

    items: list[T] = field(default_factory=list)
    remaining: int = 0
    dropped: int = 0


@dataclass(frozen=True)
class BufferCounters:
    received: int
    duplicates_dropped: int
    overflow_dropped: int
    pending: int


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
        ids = self._ids
        if item_id in ids:
            ids.move_to_end(item_id)
            return
        ids[item_id] = None
        if len(ids) > self.capacity:
            ids.popitem(last=False)

    def forget(self, item_id: str) -> None:
        self._ids.pop(item_id, None)


class DeliveryBuffer(Generic[T]):
    """Unread items, oldest first, bounded by ``capacity``.

    - :meth:`offer` drops an item whose id was seen recently (counted as a duplicate).
    - On overflow the oldest unread item is dropped and counted; its id is forgotten so a later
      redelivery (the server re-sends unacked notifications) is delivered, not swallowed.
    - The first drop of an overflow episode is logged once; the episode ends at the next read.
    - :meth:`read` returns unread items (optionally only some kinds) and removes them; items
      of other kinds stay unread.
    """

    def __init__(self, capacity: int, *, dedupe_memory: int = 10_000, name: str = "buffer") -> None:
        if capacity <= 0:
            raise ValueError("buffer capacity must be positive")
        self.capacity = capacity
        self.name = name
        self._lock = threading.Lock()
        # Each unread entry is (item, the ids it is known by, its kind): a bare tuple, not a
        # class, because one is made per inbound item, on the hot path.
        self._unread: deque[tuple[T, tuple[str, ...], str]] = deque()
        self._seen = RecentIds(max(dedupe_memory, capacity))
        self._seen_capacity = self._seen.capacity
        self._received = 0
        self._duplicates = 0
        self._overflow = 0
        self._dropped_since_read = 0

    def offer(
        self, item: T, *, item_id: str | None, kind: str, aliases: Sequence[str] = ()
    ) -> bool:
        """Add ``item``; False if it was a duplicate and dropped. Items without id are kept.

        ``aliases`` are other (non-empty) ids the same item is known by (e.g. its REST id): a
        later item with any of them is a duplicate too.
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
            unread.append((item, keys, kind))
            if len(unread) > self.capacity:
                for k in unread.popleft()[1]:
                    seen.pop(k, None)
                self._overflow += 1
                self._dropped_since_read += 1
                if self._dropped_since_read == 1:
                    _log.warning(
                        "%s buffer full (%d unread): dropping the oldest items until the next "
                        "read; read more often or raise buffer_size",
                        self.name,
                        self.capacity,
                    )
            return True

    def read(self, limit: int | None = None, kinds: Collection[str] | None = None) -> ReadResult[T]:
        """Take up to ``limit`` unread items (of ``kinds`` if given), oldest first."""
        if limit is not None and limit < 0:
            raise ValueError("limit must be zero or positive")
        wanted = set(kinds) if kinds is not None else None
        with self._lock:
            taken: list[T] = []
            kept: deque[tuple[T, tuple[str, ...], str]] = deque()
            for entry in self._unread:
                if (limit is None or len(taken) < limit) and (wanted is None or entry[2] in wanted):
                    taken.append(entry[0])
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
            return ReadResult(items=taken, remaining=remaining, dropped=dropped)

    def pending(self) -> int:
        with self._lock:
            return len(self._unread)

    def counters(self) -> BufferCounters:
        with self._lock:
            return BufferCounters(
                received=self._received,
                duplicates_dropped=self._duplicates,
                overflow_dropped=self._overflow,
                pending=len(self._unread),
            )
