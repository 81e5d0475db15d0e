"""What an ack must do on each server, and the memory of what was acked. Pure.

On the documented server a WebSocket ``ack`` marks a notification read. On the live one it
does nothing: only ``POST /api/notifications/{id}/read`` marks read, with the REST id of the
item (``msg_<message_id>`` for ``inbox.message``, ``gb_<entry_id>`` for ``guestbook.entry``),
and a REST poll serves anything left unread again, newest first. So the client sends both, keeps
the REST reads that failed for a retry, and never delivers an acked item as new again, whichever
id (socket or REST) it comes back under. State is plain data (saved by restart-safe agents).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import TypeVar

from langchain_moltcities.protocol import NotificationFrame

__all__ = ["REST_ID_PREFIXES", "AckBook", "rest_aliases"]

_V = TypeVar("_V")

# event type -> (payload key holding the item's own id, live REST id prefix)
_REST_ALIAS_KEYS: dict[str, tuple[str, str]] = {
    "inbox.message": ("message_id", "msg_"),
    "guestbook.entry": ("entry_id", "gb_"),
}
# Ids of the live REST list: an item polled over REST is acked under its own id.
REST_ID_PREFIXES = ("msg_", "gb_", "jc_", "js_")


def rest_aliases(frame: NotificationFrame) -> list[str]:
    """The REST id the live server lists this notification under, when the payload tells."""
    alias = _REST_ALIAS_KEYS.get(frame.event_type)
    if alias is None:
        return []
    key, prefix = alias
    own = frame.data.get(key)
    if isinstance(own, str) and own and len(own) <= 200:
        # Always prefixed, even an id that has the prefix already: the live server's message
        # ids are "msg_..." and their REST ids "msg_msg_...".
        rest_id = prefix + own
        return [] if rest_id == frame.id else [rest_id]
    return []


class AckBook:
    """Ids seen (and how REST knows them), ids acked, REST reads not yet done. Bounded."""

    def __init__(self, capacity: int = 10_000) -> None:
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        # notification id -> the REST id that marks it read ("" when none can: live job
        # events and mentions), for ids the client delivered.
        self._rest_id: OrderedDict[str, str] = OrderedDict()
        self._acked: OrderedDict[str, None] = OrderedDict()
        self.unsent_reads: OrderedDict[str, None] = OrderedDict()

    @staticmethod
    def _put(d: OrderedDict[str, _V], key: str, value: _V, cap: int) -> None:
        d[key] = value
        d.move_to_end(key)
        while len(d) > cap:
            d.popitem(last=False)

    def note(self, frame: NotificationFrame, aliases: Sequence[str]) -> None:
        """Remember how REST knows a delivered notification."""
        if frame.agent_id is not None:
            # Live dialect: the socket id means nothing to REST; only an alias marks read.
            rest_id = aliases[0] if aliases else ""
        elif frame.id.startswith(REST_ID_PREFIXES):
            rest_id = frame.id
        else:
            return  # documented socket frame: the socket ack marks it read
        self._put(self._rest_id, frame.id, rest_id, self.capacity)

    def rest_ids_for(self, ids: Iterable[str]) -> list[str]:
        """The REST ids whose read marks ``ids`` read (none for what REST can't mark)."""
        out: list[str] = []
        for nid in ids:
            known = self._rest_id.get(nid)
            if known:
                out.append(known)
            elif known is None and nid.startswith(REST_ID_PREFIXES):
                out.append(nid)
        return list(dict.fromkeys(out))

    def rest_id_of(self, nid: str) -> str | None:
        """The REST id for one id (itself when never seen: a documented id)."""
        known = self._rest_id.get(nid)
        if known is None:
            return nid
        return known or None

    def acked(self, ids: Iterable[str]) -> None:
        """The consumer acked ``ids``: remember them and every alias."""
        for nid in ids:
            self._put(self._acked, nid, None, self.capacity)
            known = self._rest_id.get(nid)
            if known:
                self._put(self._acked, known, None, self.capacity)

    @property
    def any_acked(self) -> bool:
        """Whether anything was acked (until then no inbound item needs looking up)."""
        return bool(self._acked)

    def is_acked(self, keys: Iterable[str]) -> bool:
        """Whether any of ``keys`` (an item's ids) was acknowledged."""
        acked = self._acked
        for k in keys:  # per inbound item: a plain loop, no generator
            if k in acked:
                return True
        return False

    def read_pending(self, rest_ids: Iterable[str]) -> None:
        """Remember REST ids whose mark-read has not reached the server yet."""
        for rid in rest_ids:
            self._put(self.unsent_reads, rid, None, self.capacity)

    def read_done(self, rest_id: str) -> None:
        """A mark-read reached the server: forget it."""
        self.unsent_reads.pop(rest_id, None)

    # Plain data for a persisted state.
    def snapshot(self) -> dict[str, list[str]]:
        """The acked ids and unsent reads as plain data."""
        return {"acked": list(self._acked), "unsent_reads": list(self.unsent_reads)}

    def restore(self, acked: dict[str, list[str]]) -> None:
        """What a previous run acked: id -> the REST ids that mark it read."""
        for nid, rest_ids in acked.items():
            if rest_ids:
                self._put(self._rest_id, nid, rest_ids[0], self.capacity)
            for key in (nid, *rest_ids):
                self._put(self._acked, key, None, self.capacity)
