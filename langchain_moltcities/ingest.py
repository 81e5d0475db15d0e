"""Where every inbound item is judged: kept or dropped, who sent it, whether it is a mention.

One room for the client's sink, so the client only routes: the subscription filter, the
memory of acked items (under any id they come back with), the handle directory's feeding and
reading, and the mentions recovered from chat. Pure (no I/O, no asyncio): the client performs
the lookups and callbacks this room asks for. Runs on the client's loop; reads may come from
any thread (the buffers and the directory lock themselves).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import TypeVar

from langchain_moltcities.acks import REST_ID_PREFIXES, AckBook, rest_aliases
from langchain_moltcities.delivery import DeliveryBuffer
from langchain_moltcities.directory import HandleDirectory, handles_in_frame
from langchain_moltcities.protocol import (
    MENTION_EVENT_TYPES,
    ChatFrame,
    NotificationFrame,
    PresenceFrame,
)
from langchain_moltcities.recovered import chat_key, mention_from_chat
from langchain_moltcities.subscriptions import SubscriptionState

__all__ = ["NOTHING", "Ingest", "Outcome", "TownSquareItem"]

TownSquareItem = ChatFrame | PresenceFrame
# Chat kept while our own handle is unknown, to be checked for mentions once it is learned.
_UNCHECKED_CHAT = 500


@dataclass
class Outcome:
    """What the client should do about one inbound item."""

    mention: NotificationFrame | None = None  # dispatch to the mention listeners
    reack: str | None = None  # an acked item came back: ack it again
    look_up: list[str] = field(default_factory=list)  # agent ids whose handle is unknown


NOTHING = Outcome()  # the common answer, one shared object (the client tests identity)
_I = TypeVar("_I", NotificationFrame, ChatFrame, PresenceFrame, ChatFrame | PresenceFrame)


class Ingest:
    """The client's judgement of inbound items; see the module docstring."""

    def __init__(
        self,
        notifications: DeliveryBuffer[NotificationFrame],
        town: DeliveryBuffer[TownSquareItem],
        *,
        memory: int,
    ) -> None:
        self.notifications = notifications
        self.town = town
        self.acks = AckBook(memory)
        self.directory = HandleDirectory()
        self.subscriptions = SubscriptionState()
        self.own_id: str | None = None
        self.own_handle: str | None = None
        self.recovered = 0  # mentions derived from chat before (or without) the server's
        # What this server calls a chat mention: documented "mention", live "mention.chat".
        self.mention_type = "mention.chat"
        self._unchecked: deque[ChatFrame] = deque(maxlen=_UNCHECKED_CHAT)
        self._server_ids: OrderedDict[str, str] = OrderedDict()  # chat key -> server mention id
        # Senders that left the directory as it was, at its version (see notification()).
        self._settled: dict[str, str | None] = {}
        self._settled_version = -1

    # ------------------------------------------------------------------ intake

    def notification(self, frame: NotificationFrame, raw: bytes | None = None) -> Outcome:
        """Judge one notification: buffer it if new and wanted; what to do about it."""
        kind = frame.event_type
        subs = self.subscriptions
        allowed = subs.allowed
        if (
            allowed is not None
            and kind not in allowed
            and not subs.admits(kind, pushed=frame.queued is False)
        ):
            return NOTHING
        rest: list[str] = rest_aliases(frame) if kind in _ALIASED else _NO_IDS
        if frame.agent_id is not None or (rest and frame.id.startswith(REST_ID_PREFIXES)):
            self.acks.note(frame, rest)
        is_mention = kind in MENTION_EVENT_TYPES
        aliases = rest
        if is_mention and (cid := frame.chat_message_id):
            # The server's mention and the one derived from the chat message are one item:
            # an ack of either must reach the server under the server's id.
            key = chat_key(cid)
            aliases = [*rest, key]
            self._server_ids[key] = frame.id
            while len(self._server_ids) > self.acks.capacity:
                self._server_ids.popitem(last=False)
        if self.acks.any_acked and self.acks.is_acked(
            (frame.id, *aliases) if aliases else (frame.id,)
        ):
            # Acked before: never new again. A redelivery means the ack was lost, and a server
            # mention acked first as its recovered twin was never acked: (re-)send it.
            return Outcome(reack=frame.id) if frame.queued or is_mention else NOTHING
        if not self.notifications.offer(
            frame, item_id=frame.id, kind=kind, aliases=aliases, raw=raw
        ):
            if is_mention and (h := frame.sender_handle) and frame.sender_id:
                # The server's twin of a recovered mention names the author's handle.
                self.directory.learn(frame.sender_id, h)
            return NOTHING
        # Once per item: a payload that names the sender's handle teaches the directory; one
        # that names only an id asks for a look-up (once per id, see HandleDirectory.missed).
        sender_id, handle = frame.sender()
        look_up = _NO_IDS
        if sender_id:
            directory = self.directory
            settled = self._settled
            if directory.version != self._settled_version or len(settled) >= _SETTLED:
                settled.clear()
                self._settled_version = directory.version
            # A flood repeats its senders: an (id, handle) already judged against an unchanged
            # directory has nothing to teach and nothing to ask (look-ups are never kept here).
            if settled.get(sender_id, _UNSET) != handle:
                known = directory.get(sender_id)
                if handle and known != handle:
                    directory.learn(sender_id, handle)
                elif not handle and not known and directory.should_look_up(sender_id):
                    look_up = [sender_id]
                if not look_up and directory.version == self._settled_version:
                    settled[sender_id] = handle
        if is_mention and not self._is_own(sender_id, handle):
            return Outcome(mention=frame, look_up=look_up)
        return Outcome(look_up=look_up) if look_up else NOTHING

    def chat(self, frame: ChatFrame, raw: bytes | None = None) -> Outcome:
        """Judge one chat message: buffer it if new; a mention in it, handles to look up."""
        if frame.agent_handle and frame.agent_id:
            self.directory.learn(frame.agent_id, frame.agent_handle)
        if not self.town.offer(frame, item_id=frame.id, kind="chat", raw=raw):
            return NOTHING
        look_up = self._unknown(frame.agent_id, frame.agent_handle)
        if self.own_handle is None:
            self._unchecked.append(frame)
            return Outcome(look_up=look_up) if look_up else NOTHING
        mention = self._mention_in(frame)
        return Outcome(mention=mention, look_up=look_up) if (mention or look_up) else NOTHING

    def presence(self, frame: PresenceFrame, raw: bytes | None = None) -> None:
        """Buffer a presence change and learn the handles it shows."""
        for agent_id, handle in handles_in_frame(frame):
            self.directory.learn(agent_id, handle)
        self.town.offer(frame, item_id=None, kind="presence", raw=raw)

    def learn_identity(
        self, agent_id: str | None, handle: str | None, *, documented: bool = False
    ) -> list[NotificationFrame]:
        """Who we are; returns mentions found in chat that arrived before we knew.

        ``documented``: the server named our handle in ``GET /api/me`` (the live one doesn't),
        so its chat mentions are called ``mention``.
        """
        if documented:
            self.mention_type = "mention"
        if agent_id:
            self.own_id = agent_id
        if not handle:
            return []
        self.own_handle = handle
        if agent_id:
            self.directory.learn(agent_id, handle)
        found = []
        while self._unchecked:
            if (m := self._mention_in(self._unchecked.popleft())) is not None:
                found.append(m)
        return found

    # ------------------------------------------------------------------ mentions

    def server_ids_for(self, ids: list[str]) -> list[str]:
        """The server's ids of mentions acked as their recovered twins (``chat:<id>``)."""
        return [sid for i in ids if (sid := self._server_ids.get(i)) is not None]

    def _mention_in(self, chat: ChatFrame) -> NotificationFrame | None:
        derived = mention_from_chat(
            chat, own_handle=self.own_handle, own_id=self.own_id, event_type=self.mention_type
        )
        if derived is None:
            return None
        key = derived.id
        subs = self.subscriptions
        if self.acks.is_acked((key,)) or (
            subs.wanted is not None and not subs.admits(derived.event_type, pushed=False)
        ):
            return None
        if not self.notifications.offer(derived, item_id=key, kind=derived.event_type):
            return None  # the server's mention of this message came first
        self.recovered += 1
        return derived

    def _is_own(self, sender_id: str | None, sender_handle: str | None) -> bool:
        if self.own_id and sender_id == self.own_id:
            return True
        own = self.own_handle
        return bool(own and sender_handle and own.casefold() == sender_handle.casefold())

    # ------------------------------------------------------------------ handles

    def _unknown(self, agent_id: str | None, handle: str | None) -> list[str]:
        if handle or not agent_id or not self.directory.should_look_up(agent_id):
            return []
        return [agent_id]

    def with_handle(self, item: _I) -> _I:
        """``item`` with its sender's handle filled in from the directory, when it lacks one."""
        if isinstance(item, NotificationFrame):
            if item.sender_handle is None and (h := self.directory.get(item.sender_id)):
                return item.model_copy(update={"handle_hint": h})
        elif isinstance(item, ChatFrame):
            if item.agent_handle is None and (h := self.directory.get(item.agent_id)):
                return item.model_copy(update={"agent_handle": h})
        return item


_ALIASED = frozenset({"inbox.message", "guestbook.entry"})
_NO_IDS: list[str] = []
_SETTLED = 256  # senders remembered as settled (a flood repeats a few)
_UNSET = object()
