"""The state interface: per-agent named values and bounded id sets, written behind.

A backend (memory, SQLite, later Redis) implements :class:`StateStore`; the client and the
responder only ever talk to :class:`AgentState`, so a new backend needs no change to them.
Reads are served from an in-memory mirror loaded when the agent is opened; writes update the
mirror at once and reach the backend in batches (:meth:`AgentState.flush` waits for that).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from langchain_moltcities.errors import MoltCitiesError

__all__ = [
    "KIND_CAPACITY",
    "KIND_MAX_BYTES",
    "AgentSnapshot",
    "AgentState",
    "Op",
    "StateError",
    "StateStore",
    "apply_ops",
    "value_size",
]

# How many ids each set keeps (oldest forgotten first): bounded however long an agent runs.
KIND_CAPACITY: dict[str, int] = {
    "presented": 10_000,  # notification ids (and REST aliases) shown to the agent, value: kind
    "acked": 10_000,  # notification ids the agent acked, value: its aliases, space-separated
    "pending_ack": 1_000,  # acked ids not yet confirmed sent (re-sent on the next start)
    "chat_seen": 2_000,  # chat ids already shown (the back-fill overlaps by a millisecond)
    "mention_inbox": 1_000,  # mentions received and not yet handled, value: the frame JSON
    "mention_done": 10_000,  # mentions handled (answered or skipped), value: the verdict
    "gap": 100,  # chat gaps reported to the agent, value: JSON of the span
    "handle": 5_000,  # agent id -> handle directory
    # Notifications delivered and not yet acked (read or not), value: the frame's JSON. The
    # live server forgets a push at once: this is the only copy a restart can present again.
    "unread": 1_000,
}
# Kinds bounded in bytes (of their values, UTF-8) as well as in count (oldest dropped first).
KIND_MAX_BYTES: dict[str, int] = {"unread": 4 << 20}


def value_size(value: str) -> int:
    """The bytes a stored value counts against its kind's byte bound."""
    return len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))


class StateError(MoltCitiesError):
    """The state store can't be used as it is (corrupt, locked, foreign, newer schema...)."""


@dataclass
class AgentSnapshot:
    """What a backend holds for one agent: loaded once when the agent is opened."""

    values: dict[str, str] = field(default_factory=dict)
    sets: dict[str, dict[str, str]] = field(default_factory=dict)  # kind -> id -> value


# One write: ("set", key, value | None) or ("add", kind, id, value) or ("discard", kind, id).
Op = tuple[str, str, str, str | None] | tuple[str, str, str | None]


def apply_ops(snapshot: AgentSnapshot, ops: Iterable[Op]) -> None:
    """Apply writes to a snapshot, keeping each set within its bound (oldest dropped)."""
    for op in ops:
        if op[0] == "set":
            key, value = op[1], op[2]
            if value is None:
                snapshot.values.pop(key, None)
            else:
                snapshot.values[key] = value
        elif op[0] == "add" and len(op) == 4:
            ids = snapshot.sets.setdefault(op[1], {})
            ids.pop(op[2], None)
            ids[op[2]] = op[3] or ""
            while len(ids) > KIND_CAPACITY.get(op[1], 10_000):
                del ids[next(iter(ids))]
        elif op[0] == "discard":
            snapshot.sets.get(op[1], {}).pop(op[2] or "", None)


class StateStore(ABC):
    """A place to keep agents' state. ``persistent`` is False for the in-memory default."""

    persistent: bool = True
    location: str = ""

    @abstractmethod
    def load(self, agent_id: str) -> AgentSnapshot:
        """Everything stored for ``agent_id`` (empty if nothing)."""

    @abstractmethod
    def submit(self, agent_id: str, ops: list[Op]) -> None:
        """Queue writes; never blocks on I/O (called from the client's loop)."""

    @abstractmethod
    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every submitted write is durable; StateError if it can't be."""

    @abstractmethod
    def close(self) -> None:
        """Flush and release the store (idempotent)."""

    def nudge(self) -> None:  # noqa: B027 (optional: stores that write at once need nothing)
        """Start writing what is queued now rather than at the end of the batch window."""

    def agent(self, agent_id: str) -> AgentState:
        """The state of one agent, loaded now."""
        return AgentState(self, agent_id, self.load(agent_id))


class AgentState:
    """One agent's state: thread-safe reads from memory, writes queued to the store."""

    def __init__(self, store: StateStore, agent_id: str, snapshot: AgentSnapshot) -> None:
        self.store, self.agent_id = store, agent_id
        self._lock = threading.Lock()
        self._values = dict(snapshot.values)
        self._sets: dict[str, OrderedDict[str, str]] = {
            kind: OrderedDict(snapshot.sets.get(kind, {})) for kind in KIND_CAPACITY
        }
        self._bytes = {
            kind: sum(map(value_size, self._sets[kind].values())) for kind in KIND_MAX_BYTES
        }

    def get(self, key: str) -> str | None:
        """The stored value of ``key`` (None if unset)."""
        with self._lock:
            return self._values.get(key)

    def set(self, key: str, value: str | None) -> None:
        """Store ``value`` under ``key`` (None removes it); unchanged values write nothing."""
        with self._lock:
            if self._values.get(key) == value:
                return
            if value is None:
                self._values.pop(key, None)
            else:
                self._values[key] = value
        self.store.submit(self.agent_id, [("set", key, value)])

    def members(self, kind: str) -> dict[str, str]:
        """A copy of one set, oldest first."""
        with self._lock:
            return dict(self._sets[kind])

    def contains(self, kind: str, item_id: str) -> bool:
        """Whether set ``kind`` holds ``item_id``."""
        with self._lock:
            return item_id in self._sets[kind]

    def absent(self, item_ids: Iterable[str], *kinds: str) -> list[str]:
        """Of ``item_ids``, those in none of the sets ``kinds`` (one lock for all)."""
        with self._lock:
            sets = [self._sets[k] for k in kinds]
            return [i for i in item_ids if not any(i in s for s in sets)]

    def add(self, kind: str, items: Mapping[str, str]) -> None:
        """Add ``items`` (id to value) to set ``kind``."""
        if not items:
            return
        cap = KIND_CAPACITY[kind]
        max_bytes = KIND_MAX_BYTES.get(kind)
        ops: list[Op] = []
        with self._lock:
            ids = self._sets[kind]
            for item_id, value in items.items():
                old = ids.get(item_id)
                if old == value:
                    continue
                ids[item_id] = value
                ids.move_to_end(item_id)
                ops.append(("add", kind, item_id, value))
                if max_bytes is not None:
                    self._bytes[kind] += value_size(value) - (value_size(old) if old else 0)
            while len(ids) > cap:
                # The backend trims its copy to the same bound.
                _, value = ids.popitem(last=False)
                if max_bytes is not None:
                    self._bytes[kind] -= value_size(value)
            if max_bytes is not None:
                while self._bytes[kind] > max_bytes and ids:
                    item_id, value = ids.popitem(last=False)
                    self._bytes[kind] -= value_size(value)
                    ops.append(("discard", kind, item_id))
        if ops:
            self.store.submit(self.agent_id, ops)

    def discard(self, kind: str, ids: Iterable[str]) -> None:
        """Remove ``ids`` from set ``kind``."""
        ops: list[Op] = []
        with self._lock:
            held = self._sets[kind]
            for item_id in ids:
                value = held.pop(item_id, None)
                if value is not None:
                    ops.append(("discard", kind, item_id))
                    if kind in self._bytes:
                        self._bytes[kind] -= value_size(value)
        if ops:
            self.store.submit(self.agent_id, ops)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait (up to ``timeout``) until every change so far is stored."""
        self.store.flush(timeout)
