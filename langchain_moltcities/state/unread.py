"""Notifications delivered and not yet acked, kept so that a restart presents them again.

The live server forgets a notification as it pushes it: its offline queue is emptied on
connect before any ack, live pushes are not stored, and its REST list holds only messages
and guestbook entries. A job or follow notification received and not yet acked exists only
in this process; after a crash nothing else can bring it back. So every such notification
the client accepts is kept in the ``unread`` kind (frame JSON, bounded in count and bytes, cut
like the buffer cuts it) until the agent acks it.

Only what the server would not give back is kept: a pushed frame of the live dialect (it
names its recipient, ``agent_id``). The documented server keeps every notification until it
is acked and redelivers it on connect, and items polled over REST stay listed until marked
read, so storing those would cost a write per item for nothing (a restart gets them again,
and the buffer drops the second copy of anything it holds).

Cost and window: per frame, one ``deque.append`` (:meth:`UnreadKeeper.arrived`). Each tick
of the client's state keeper packs what arrived and asks the store to commit at once, so a
``kill -9`` loses at most what arrived during the last tick (``interval``, 50 ms by default)
and its commit. A read closes the window for what it returns: those items are stored and
committed before the agent sees them. Nothing else can close it short of a disk write per
frame: the live server deleted its copy before we could ack anything.

Mentions are left out too: they come back their own way (the responder's mention inbox and the
chat back-fill), and presenting a stored copy would hide the back-filled one.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

from langchain_moltcities.holding import FrameCodec
from langchain_moltcities.protocol import MENTION_EVENT_TYPES, NotificationFrame, parse_frame
from langchain_moltcities.state.base import KIND_CAPACITY, AgentState

__all__ = ["UnreadKeeper"]

_log = logging.getLogger("langchain_moltcities.state")
_KIND = "unread"


class UnreadKeeper:
    """Keeps one agent's delivered, unacked notifications in its state."""

    def __init__(self, state: AgentState, *, max_item_bytes: int) -> None:
        self.state = state
        self._codec: FrameCodec[NotificationFrame] = FrameCodec(
            (NotificationFrame,), max_item_bytes
        )
        # Bounded like the kind: in a flood, older arrivals would be trimmed anyway.
        self._arrived: deque[NotificationFrame] = deque(maxlen=KIND_CAPACITY[_KIND])

    def arrived(self, frame: Any) -> None:
        """A frame the client accepted (a frame listener: runs per frame, on the loop)."""
        if type(frame) is NotificationFrame and _only_copy(frame):
            self._arrived.append(frame)

    def save(self) -> bool:
        """Store what arrived since the last call; whether anything new was stored."""
        frames: list[NotificationFrame] = []
        pop = self._arrived.popleft
        while True:
            try:
                frames.append(pop())
            except IndexError:
                break
        return self.keep(frames)

    def keep(self, frames: Iterable[NotificationFrame]) -> bool:
        """Store ``frames`` not stored (nor acked) yet; whether any was."""
        by_id = {f.id: f for f in frames if _only_copy(f)}
        items: dict[str, str] = {}
        for nid in self.state.absent(by_id, _KIND, "acked"):
            held, _ = self._codec.pack(by_id[nid], None)
            items[nid] = held.decode("utf-8", "replace")
        self.state.add(_KIND, items)
        return bool(items)

    def acked(self, ids: Sequence[str]) -> None:
        """The agent acked ``ids``: they leave the store."""
        self.state.discard(_KIND, ids)

    def stored(self) -> list[tuple[NotificationFrame, bytes]]:
        """What a previous run kept (oldest first), to be offered again as it arrived then."""
        out: list[tuple[NotificationFrame, bytes]] = []
        stale: list[str] = []
        for nid, text in self.state.members(_KIND).items():
            raw = text.encode("utf-8")
            frame = parse_frame(raw)
            if (
                not isinstance(frame, NotificationFrame)
                or frame.id != nid
                or not _only_copy(frame)
                or self.state.contains("acked", nid)
            ):
                stale.append(nid)  # acked in a race with its storing, or not ours to show
                continue
            out.append((frame, raw))
        if stale:
            self.state.discard(_KIND, stale)
        if out:
            _log.info(
                "presenting again %d notification(s) delivered before the restart and never "
                "acknowledged",
                len(out),
            )
        return out


def _only_copy(frame: NotificationFrame) -> bool:
    """Whether this process holds the only copy: a live push (it names its recipient) that
    is not a mention."""
    return frame.agent_id is not None and frame.event_type not in MENTION_EVENT_TYPES
