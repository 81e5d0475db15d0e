"""MoltCities wire frames as pydantic models, and a parser that never raises.

Pure: no I/O, no asyncio (like the sans-I/O core of ``websockets``). Both the documented
protocol and the live server's dialect parse, and normalise to the same accessors
(``sender_id``, ``sender_handle``, ``text``, ``is_mention``...), so nothing downstream needs to
know which server it talks to.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

__all__ = [
    "DOCUMENTED_EVENT_TYPES",
    "LIVE_EVENT_TYPES",
    "MENTION_EVENT_TYPES",
    "AckFrame",
    "ChatFrame",
    "ChatHistory",
    "ChatPostResponse",
    "ClientFrame",
    "ConnectedFrame",
    "ErrorFrame",
    "InvalidFrame",
    "KnownFrame",
    "MeResponse",
    "NotificationFrame",
    "NotificationsPage",
    "PingFrame",
    "PongFrame",
    "PresenceAgent",
    "PresenceFrame",
    "RestAgent",
    "RestChatMessage",
    "RestNotification",
    "ServerFrame",
    "SubscribeFrame",
    "SubscribedFrame",
    "UnknownFrame",
    "encode_client_frame",
    "parse_frame",
    "parse_object",
    "parse_timestamp",
]

DOCUMENTED_EVENT_TYPES: tuple[str, ...] = (
    "inbox.message",
    "guestbook.entry",
    "mention",
    "job.application",
    "job.status",
)
"""The documented event types, which are also the documented default subscription."""

LIVE_EVENT_TYPES: tuple[str, ...] = (
    "inbox.message",
    "guestbook.entry",
    "mention.chat",
    "mention.town_square",
    "site.followed",
    "job.worker_interested",
    "job.submitted",
    "job.approved",
    "job.paid",
)
"""Event types the live server actually sends (see live-server-notes.md)."""

MENTION_EVENT_TYPES: frozenset[str] = frozenset({"mention", "mention.chat", "mention.town_square"})

# REST `type` values of the live notifications list, mapped onto WebSocket event names.
_REST_TYPE_TO_EVENT: dict[str, str] = {
    "message": "inbox.message",
    "guestbook": "guestbook.entry",
    "job_attempt": "job.application",
    "job_status": "job.status",
    "mention": "mention",
}

_MAX_RAW_KEPT = 2000


def parse_timestamp(value: str | int | float | None) -> datetime | None:
    """Parse any timestamp the servers send (ISO with ``Z``, ``YYYY-MM-DD HH:MM:SS``, epoch ms).

    Zone-less values are UTC (the live REST API sends guestbook times that way).
    Returns None for anything unreadable rather than raising.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(value / 1000, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


class _Frame(BaseModel):
    # Unknown keys are kept (extra="allow") so a newer server's additions are never lost.
    model_config = ConfigDict(extra="allow", frozen=True)

    def to_dict(self) -> dict[str, Any]:
        """The frame as plain JSON-ready data, extra keys included."""
        return self.model_dump(mode="json", exclude_none=True)


# --------------------------------------------------------------------------- server frames


class ConnectedFrame(_Frame):
    """``connected``: personal form (``connection_id``, ``agent_id``) or town-square form."""

    type: Literal["connected"] = "connected"
    connection_id: str | None = None
    agent_id: str | None = None
    channel: str | None = None
    online_count: int | None = None
    server_time: str | None = None


class InboxMessageData(_Frame):
    """Documented ``inbox.message`` data (the live form adds a ``from`` object)."""

    message_id: str | None = None
    from_agent_id: str | None = None
    from_handle: str | None = None
    subject: str | None = None
    preview: str | None = None


class GuestbookEntryData(_Frame):
    """Documented ``guestbook.entry`` data (live: ``author``, ``author_agent_id``, ...)."""

    entry_id: str | None = None
    from_agent_id: str | None = None
    from_handle: str | None = None
    message: str | None = None


class JobApplicationData(_Frame):
    job_id: str | None = None
    job_title: str | None = None
    applicant_id: str | None = None
    applicant_handle: str | None = None
    proposal: str | None = None


class JobStatusData(_Frame):
    job_id: str | None = None
    job_title: str | None = None
    old_status: str | None = None
    new_status: str | None = None
    by_agent_id: str | None = None


class MentionData(_Frame):
    """Documented ``mention`` data (live ``mention.chat``: ``author_id``, ``message_preview``)."""

    context: str | None = None
    message_id: str | None = None
    by_agent_id: str | None = None
    by_handle: str | None = None
    snippet: str | None = None


class GenericData(_Frame):
    """Data of an event type this package does not know; every key is kept."""


_DATA_MODELS: dict[str, type[_Frame]] = {
    "inbox.message": InboxMessageData,
    "guestbook.entry": GuestbookEntryData,
    "job.application": JobApplicationData,
    "job.status": JobStatusData,
    "mention": MentionData,
    "mention.chat": MentionData,
    "mention.town_square": MentionData,
}


# Where each dialect names a notification's sender, in order of preference.
_SENDER_ID_KEYS: tuple[str, ...] = (
    "from_agent_id",
    "by_agent_id",
    "author_id",
    "author_agent_id",
    "applicant_id",
    "follower_id",
    "worker_id",
    "poster_id",
    "agent_id",
)
_SENDER_HANDLE_KEYS: tuple[str, ...] = ("from_handle", "by_handle", "applicant_handle", "handle")


class NotificationFrame(_Frame):
    """A personal notification, documented or live, with normalised accessors."""

    type: Literal["notification"] = "notification"
    id: str
    event_type: str
    created_at: str | None = None
    queued: bool = False
    agent_id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    # Set by the client, never by a server: derived from a chat message (see recovered.py),
    # and the sender's handle when the payload lacks it (learned by the handle directory).
    recovered: bool = False
    handle_hint: str | None = None

    @property
    def typed_data(self) -> _Frame:
        """``data`` as the model for its event type (``GenericData`` when unknown)."""
        model = _DATA_MODELS.get(self.event_type, GenericData)
        try:
            return model.model_validate(self.data)
        except ValidationError:
            return GenericData.model_validate(self.data)

    @property
    def is_mention(self) -> bool:
        """Whether this notification is an @mention (documented or live event names)."""
        return self.event_type in MENTION_EVENT_TYPES

    @property
    def sender_id(self) -> str | None:
        """Id of the agent who caused this notification, whichever form the server used."""
        # Read for every inbound notification: a plain loop, no generator, no helper calls.
        d = self.data
        frm = d.get("from")
        if isinstance(frm, dict):
            v = frm.get("agent_id") or frm.get("id")
            if isinstance(v, str) and v:
                return v
        for k in _SENDER_ID_KEYS:
            v = d.get(k)
            if isinstance(v, str) and v:
                return v
        return None

    @property
    def sender_handle(self) -> str | None:
        """Handle (slug) of the sender, when the server said it."""
        d = self.data
        frm = d.get("from")
        if isinstance(frm, dict):
            h = frm.get("handle")
            if isinstance(h, str) and h:
                return h
        for k in _SENDER_HANDLE_KEYS:
            h = d.get(k)
            if isinstance(h, str) and h:
                return h
        return self.handle_hint

    def sender(self) -> tuple[str | None, str | None]:
        """``(sender_id, sender_handle)`` in one pass over the payload (read per inbound item)."""
        d = self.data
        frm = d.get("from")
        sid: str | None = None
        handle: str | None = None
        if isinstance(frm, dict):
            v = frm.get("agent_id") or frm.get("id")
            if isinstance(v, str) and v:
                sid = v
            h = frm.get("handle")
            if isinstance(h, str) and h:
                handle = h
        if sid is None:
            for k in _SENDER_ID_KEYS:
                v = d.get(k)
                if isinstance(v, str) and v:
                    sid = v
                    break
        if handle is None:
            for k in _SENDER_HANDLE_KEYS:
                h = d.get(k)
                if isinstance(h, str) and h:
                    return sid, h
            return sid, self.handle_hint
        return sid, handle

    @property
    def sender_name(self) -> str | None:
        """Best human-readable name of the sender: handle, else display name."""
        if h := self.sender_handle:
            return h
        d = self.data
        frm = d.get("from")
        if isinstance(frm, dict) and (n := _str(frm.get("display_name") or frm.get("name"))):
            return n
        for k in ("author_name", "author", "follower_name", "worker_name", "poster_name", "name"):
            if n := _str(d.get(k)):
                return n
        return None

    @property
    def subject(self) -> str | None:
        """A subject or job title, if the event has one."""
        return _str(self.data.get("subject")) or _str(self.data.get("job_title"))

    @property
    def text(self) -> str | None:
        """The human text of the notification (preview, snippet, message, proposal...)."""
        d = self.data
        for k in ("preview", "snippet", "message_preview", "message", "proposal", "body"):
            if t := _str(d.get(k)):
                return t
        if self.event_type == "job.status":
            old, new = _str(d.get("old_status")), _str(d.get("new_status"))
            if new:
                return f"status {old or '?'} -> {new}"
        return None

    @property
    def chat_message_id(self) -> str | None:
        """For a mention, the id of the chat message that mentioned us."""
        return _str(self.data.get("message_id")) if self.is_mention else None

    @property
    def created(self) -> datetime | None:
        """``created_at`` as a datetime (None if absent or unreadable)."""
        return parse_timestamp(self.created_at)


class PongFrame(_Frame):
    """The server's answer to a ``ping``."""

    type: Literal["pong"] = "pong"
    timestamp: int | None = None


class SubscribedFrame(_Frame):
    """The server's echo of a ``subscribe``: the event types now subscribed."""

    type: Literal["subscribed"] = "subscribed"
    events: list[str] = Field(default_factory=list)


class ErrorFrame(_Frame):
    """An error the server reports on the socket (``code``, ``message``)."""

    type: Literal["error"] = "error"
    code: int | None = None
    message: str | None = None


class ChatFrame(_Frame):
    """A Town Square chat message (the same model holds REST history items, normalised)."""

    type: Literal["chat"] = "chat"
    id: str
    agent_id: str | None = None
    agent_name: str | None = None
    agent_handle: str | None = None
    message: str = ""
    created_at: str | None = None

    @property
    def sender_id(self) -> str | None:
        """The author's agent id."""
        return self.agent_id

    @property
    def sender_name(self) -> str | None:
        """The author's handle, else display name."""
        return self.agent_handle or self.agent_name

    @property
    def text(self) -> str:
        """The message text."""
        return self.message

    @property
    def created(self) -> datetime | None:
        """``created_at`` as a datetime (None if absent or unreadable)."""
        return parse_timestamp(self.created_at)


class PresenceAgent(_Frame):
    """Who joined or left the Town Square."""

    id: str | None = None
    handle: str | None = None


class PresenceFrame(_Frame):
    """``presence``: ``event`` is ``joined``, ``left`` or ``timeout`` (others are kept as-is)."""

    type: Literal["presence"] = "presence"
    event: str
    agent: PresenceAgent = Field(default_factory=PresenceAgent)
    online_count: int | None = None


class UnknownFrame(_Frame):
    """A well-formed JSON frame whose ``type`` this package does not know. Kept, never dropped."""

    type: str | None = None
    raw: dict[str, Any] = Field(default_factory=dict)


class InvalidFrame(_Frame):
    """What :func:`parse_frame` returns for bytes it can't read: the reason and the raw (cut)."""

    type: Literal["invalid"] = "invalid"
    error: str
    raw: str = ""


KnownFrame = (
    ConnectedFrame
    | NotificationFrame
    | PongFrame
    | SubscribedFrame
    | ErrorFrame
    | ChatFrame
    | PresenceFrame
)
ServerFrame = KnownFrame | UnknownFrame | InvalidFrame

_SERVER_MODELS: dict[str, type[_Frame]] = {
    "connected": ConnectedFrame,
    "notification": NotificationFrame,
    "pong": PongFrame,
    "subscribed": SubscribedFrame,
    "error": ErrorFrame,
    "chat": ChatFrame,
    "presence": PresenceFrame,
}


def _cut(text: str) -> str:
    return text if len(text) <= _MAX_RAW_KEPT else text[:_MAX_RAW_KEPT] + "...[cut]"


# Every well-formed frame of a known type takes this path: pydantic-core reads the JSON and
# picks the model by ``type`` in one native pass, which costs less than ``json.loads`` alone.
# Anything it rejects goes the slow way, which says precisely what was wrong.
_KNOWN_FRAME: TypeAdapter[KnownFrame] = TypeAdapter(
    Annotated[KnownFrame, Field(discriminator="type")]
)

_KNOWN_VALIDATOR = _KNOWN_FRAME.validator


def parse_frame(data: str | bytes | bytearray | memoryview) -> ServerFrame:
    """Parse one server frame. Never raises.

    Known types become their model; an unknown ``type`` becomes :class:`UnknownFrame` with
    the whole object kept; bytes that are not a JSON object, or a known type with a broken
    shape, become :class:`InvalidFrame` saying what was wrong.
    """
    if not isinstance(data, memoryview):
        try:
            # The core validator itself: TypeAdapter's Python wrapper costs a tenth as much again.
            frame: ServerFrame = _KNOWN_VALIDATOR.validate_json(data)
            return frame
        except (ValidationError, RecursionError, ValueError):
            pass
    return _parse_slowly(data)


def _parse_slowly(data: str | bytes | bytearray | memoryview) -> ServerFrame:
    if isinstance(data, bytes | bytearray | memoryview):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            return InvalidFrame(
                error=f"frame is not valid UTF-8 ({exc.reason})", raw=repr(bytes(data)[:200])
            )
    else:
        text = data
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return InvalidFrame(error=f"frame is not JSON ({type(exc).__name__})", raw=_cut(text))
    return parse_object(obj, raw_text=text)


def parse_object(obj: Any, *, raw_text: str | None = None) -> ServerFrame:
    """Like :func:`parse_frame` for an already-decoded JSON value. Never raises."""
    if not isinstance(obj, dict):
        return InvalidFrame(
            error=f"frame is JSON but not an object (got {type(obj).__name__})",
            raw=_cut(raw_text if raw_text is not None else _safe_dumps(obj)),
        )
    ftype = obj.get("type")
    model = _SERVER_MODELS.get(ftype) if isinstance(ftype, str) else None
    if model is None:
        return UnknownFrame(type=ftype if isinstance(ftype, str) else None, raw=obj)
    try:
        return model.model_validate(obj)  # type: ignore[return-value]
    except (ValidationError, RecursionError) as exc:
        return InvalidFrame(
            error=f"{ftype!r} frame has an unexpected shape: {_summarise(exc)}",
            raw=_cut(raw_text if raw_text is not None else _safe_dumps(obj)),
        )


def _safe_dumps(obj: Any) -> str:
    try:
        return json.dumps(obj, ensure_ascii=False, default=str)
    except (ValueError, TypeError, RecursionError):
        return repr(obj)[:_MAX_RAW_KEPT]


def _summarise(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        parts = [
            f"{'.'.join(str(p) for p in err['loc']) or 'frame'}: {err['msg']}"
            for err in exc.errors()[:3]
        ]
        return "; ".join(parts)
    return type(exc).__name__


# --------------------------------------------------------------------------- client frames


class PingFrame(_Frame):
    """Client ``ping`` (keeps the server's idle timer happy)."""

    type: Literal["ping"] = "ping"


class AckFrame(_Frame):
    """Client ``ack`` of one notification id."""

    type: Literal["ack"] = "ack"
    notification_id: str


class SubscribeFrame(_Frame):
    """Client ``subscribe`` to event types."""

    type: Literal["subscribe"] = "subscribe"
    events: list[str]


ClientFrame = PingFrame | AckFrame | SubscribeFrame

_CLIENT_MODELS: dict[str, type[_Frame]] = {
    "ping": PingFrame,
    "ack": AckFrame,
    "subscribe": SubscribeFrame,
}


def encode_client_frame(frame: ClientFrame) -> str:
    """The JSON text to send for a client frame."""
    return frame.model_dump_json(exclude_none=True)


def parse_client_frame(data: str | bytes) -> ClientFrame | None:
    """Parse a client->server frame (used by the local server). None if it isn't one."""
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(obj, dict):
        return None
    model = _CLIENT_MODELS.get(obj.get("type"))  # type: ignore[arg-type]
    if model is None:
        return None
    try:
        return model.model_validate(obj)  # type: ignore[return-value]
    except ValidationError:
        return None


# --------------------------------------------------------------------------- REST shapes


class RestAgent(_Frame):
    """An agent as REST answers name it (id, handle or slug, name)."""

    id: str | None = None
    name: str | None = None
    handle: str | None = None
    avatar: str | None = None
    profile_url: str | None = None


class RestChatMessage(_Frame):
    """One item of ``GET /api/chat`` (and the ``message`` of a ``POST /api/chat`` reply)."""

    id: str
    message: str = ""
    created_at: str | None = None
    agent: RestAgent = Field(default_factory=RestAgent)

    def to_chat(self) -> ChatFrame:
        """The same message in the WebSocket ``chat`` shape, so both dedupe by one id."""
        handle = self.agent.handle
        if handle is None and self.agent.profile_url:
            # Live profile URLs are https://<slug>.moltcities.org
            host = self.agent.profile_url.split("//", 1)[-1].split("/", 1)[0]
            handle = host.split(".", 1)[0] or None
        return ChatFrame(
            id=self.id,
            agent_id=self.agent.id,
            agent_name=self.agent.name,
            agent_handle=handle,
            message=self.message,
            created_at=self.created_at,
        )


class ChatPostResponse(_Frame):
    """The answer to ``POST /api/chat``."""

    success: bool = True
    message: RestChatMessage


class ChatHistory(_Frame):
    """The answer to ``GET /api/chat``: messages, oldest first."""

    messages: list[RestChatMessage] = Field(default_factory=list)
    latest: str | None = None
    count: int | None = None


class RestNotification(_Frame):
    """One item of ``GET /api/notifications``: documented (``event_type``) or live (``type``)."""

    id: str
    event_type: str | None = None
    type: str | None = None
    read: bool = False
    created_at: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    def to_notification(self) -> NotificationFrame:
        """Normalise to the WebSocket notification shape."""
        event = self.event_type or _REST_TYPE_TO_EVENT.get(self.type or "", self.type or "unknown")
        return NotificationFrame(
            id=self.id, event_type=event, created_at=self.created_at, queued=True, data=self.data
        )


class NotificationsPage(_Frame):
    """The answer to ``GET /api/notifications``."""

    notifications: list[RestNotification] = Field(default_factory=list)
    unread_count: int | None = None
    count: int | None = None
    has_more: bool = False


class MeAgent(_Frame):
    id: str
    name: str | None = None
    handle: str | None = None
    slug: str | None = None


class MeResponse(_Frame):
    """The answer to ``GET /api/me``."""

    agent: MeAgent

    @property
    def handle(self) -> str | None:
        """The agent's handle (or slug)."""
        return self.agent.handle or self.agent.slug
