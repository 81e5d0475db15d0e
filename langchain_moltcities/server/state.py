"""The local MoltCities server's state and rules, with no I/O (sans-I/O).

Every operation returns the *effects* it causes (``Send`` a frame to a connection, ``Close``
a connection with a code) and the ASGI layer in ``app.py`` carries them out. That keeps who
gets what (queues, acks, subscriptions, presence, mentions, rate limits) testable without
sockets, and keeps the socket layer thin. Not thread-safe: call it from one thread (the
server's event loop) at a time.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from langchain_moltcities.protocol import DOCUMENTED_EVENT_TYPES, parse_timestamp
from langchain_moltcities.server import events, live
from langchain_moltcities.server.events import AgentRef, Event, Mode

if TYPE_CHECKING:
    from langchain_moltcities.server.community import Job

PERSONAL = "personal"
TOWN_SQUARE = "town-square"
LIVE_QUEUE_LIMIT = 100
CHAT_MAX_CHARS = 500
MESSAGE_BODY_MAX_CHARS = 5000
HANDLE_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
MENTION_RE = re.compile(r"@([a-zA-Z0-9_-]+)")

# srv.notify() with a bare event name: which REST list type and id prefix it gets.
_REST_TYPE_FOR_EVENT: dict[str, tuple[str, str]] = {
    "inbox.message": ("message", "msg_"),
    "guestbook.entry": ("guestbook", "gb_"),
    "job.application": ("job_attempt", "jc_"),
    "job.worker_interested": ("job_attempt", "jc_"),
    "job.status": ("job_status", "js_"),
    "job.submitted": ("job_status", "js_"),
    "job.approved": ("job_status", "js_"),
    "job.paid": ("job_status", "js_"),
}


class ApiError(Exception):
    """A REST request the rules refuse: HTTP ``status`` with a JSON ``body``."""

    def __init__(self, status: int, error: str, **extra: Any) -> None:
        super().__init__(f"{status}: {error}")
        self.status = status
        self.body: dict[str, Any] = {"error": error, **extra}


@dataclass(frozen=True)
class Send:
    """Send ``frame`` (a JSON object) to connection ``conn_id``."""

    conn_id: str
    frame: dict[str, Any]


@dataclass(frozen=True)
class Close:
    """Close connection ``conn_id`` with a WebSocket close code."""

    conn_id: str
    code: int
    reason: str


Effect = Send | Close


@dataclass
class Agent:
    """A registered agent."""

    id: str
    handle: str
    name: str
    api_key: str = field(repr=False)
    created_at: str

    def ref(self) -> AgentRef:
        """The agent as events name it."""
        return AgentRef(self.id, self.handle, self.name)


@dataclass
class Notification:
    """One raised notification, as the WebSocket and the REST list see it."""

    id: str
    agent_id: str
    event: Event
    created_at: str
    rest_created_at: str
    acked: bool = False  # documented: acked over WS or marked read over REST
    read: bool = False  # live: a message marked read over REST (others: ``ServerState.reads``)
    read_at: str | None = None
    # Delivery journal, so a test can explain every loss: the connections this was written
    # to, whether the live offline queue dropped it for overflow, and whether it went out as
    # the queued back-log of a new connection.
    sent_to: list[str] = field(default_factory=list)
    queue_dropped: bool = False
    flushed: bool = False


@dataclass
class Session:
    """One WebSocket connection of an agent on a channel."""

    conn_id: str
    agent: Agent
    channel: str
    connection_id: str
    last_ping: float
    subscriptions: tuple[str, ...] = DOCUMENTED_EVENT_TYPES


@dataclass
class ChatMessage:
    """A Town Square message as stored."""

    id: str
    agent: Agent
    message: str
    created_at: str
    created: datetime


def _rand(n: int = 10) -> str:
    return secrets.token_urlsafe(n)[:n]


def new_api_key() -> str:
    """A fresh ``mc_...`` key."""
    return "mc_" + secrets.token_hex(32)


def new_agent_id() -> str:
    """A fresh agent id."""
    return "agent_" + secrets.token_hex(6)


def default_name(handle: str) -> str:
    """A display name made from a handle (``echo-bot`` -> ``EchoBot``)."""
    return "".join(part.capitalize() for part in re.split(r"[-_]", handle)) or handle


class ServerState:
    """Agents, connections, notifications, chat and jobs of one local server."""

    def __init__(
        self,
        mode: Mode = "documented",
        *,
        idle_timeout: float = 300.0,
        chat_rate_limit: tuple[int, float] = (10, 10.0),
        hourly_limits: dict[str, int] | None = None,
        displacement_race: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if mode not in ("documented", "live"):
            raise ValueError(f"mode must be 'documented' or 'live', not {mode!r}")
        self.mode: Mode = mode
        self.idle_timeout = idle_timeout
        self.chat_rate_limit = chat_rate_limit
        # Live mode: per-agent posts an hour by kind ("chat", "message", "guestbook"), as the
        # live server's trust tiers allow (e.g. 60, 30, 20 at tier 1); none unless given.
        unknown = set(hourly_limits or {}) - set(live.HOURLY_LIMIT_ERRORS)
        if unknown:
            raise ValueError(
                f"unknown hourly limit kind(s) {sorted(unknown)}; use chat, message or guestbook"
            )
        self.hourly_limits = dict(hourly_limits or {})
        # Live: for this long after a 4003 the new connection is missing from the live
        # server's map (the old socket's close handler deletes the agent's entry), so pushes
        # to it are queued for the next reconnect and Town Square chat passes it by.
        self.displacement_race = displacement_race
        self._hidden_until: dict[str, float] = {}  # conn id -> clock time it reappears
        self._hourly: dict[tuple[str, str], deque[float]] = {}
        self._clock = clock
        self._wallclock = wallclock
        self._last_time: datetime | None = None
        self.agents: dict[str, Agent] = {}  # by lower-case handle
        self._by_key: dict[str, Agent] = {}
        self.sessions: dict[str, Session] = {}
        self.notifications: dict[str, list[Notification]] = {}  # by agent id
        self.live_queues: dict[str, deque[Notification]] = {}  # by agent id (live mode)
        self.chat: list[ChatMessage] = []
        self.jobs: dict[str, Job] = {}
        self._chat_times: dict[str, deque[float]] = {}
        # How each WebSocket session ended: "closed:<code>" (server close, frames before it
        # arrive), "displaced" (a newer connection replaced it) or "gone" (the link went away
        # under it). Plus handshakes tried, refused or not.
        self.session_ends: dict[str, str] = {}
        self.ws_handshakes = 0
        # Live: REST ids (gb_/jc_/js_) an agent marked read (the live notification_reads table).
        self.reads: dict[str, set[str]] = {}
        self.follows: set[tuple[str, str]] = set()  # (follower id, followed agent id)

    # ------------------------------------------------------------------ time and agents

    def now(self) -> datetime:
        """Wall time, strictly increasing (1 ms steps) so ``after=`` cursors never tie."""
        t = self._wallclock().astimezone(UTC)
        t = t.replace(microsecond=t.microsecond // 1000 * 1000)
        if self._last_time is not None and t <= self._last_time:
            t = self._last_time + timedelta(milliseconds=1)
        self._last_time = t
        return t

    @staticmethod
    def iso(t: datetime) -> str:
        """``t`` as the server writes times (ISO 8601, milliseconds, ``Z``)."""
        return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"

    def register_agent(
        self,
        handle: str,
        *,
        name: str | None = None,
        agent_id: str | None = None,
        api_key: str | None = None,
    ) -> Agent:
        """Add an agent; ``handle`` is its site slug (letters, digits, ``-``, ``_``)."""
        if not HANDLE_RE.match(handle):
            raise ValueError(
                f"invalid handle {handle!r}: use 1-64 letters, digits, '-' or '_' (e.g. 'alice')"
            )
        if handle.lower() in self.agents:
            raise ValueError(f"an agent with handle {handle!r} already exists")
        key = api_key or new_api_key()
        if key in self._by_key:
            raise ValueError(f"the API key given for {handle!r} is already in use")
        agent = Agent(
            id=agent_id or (live.new_id() if self.mode == "live" else new_agent_id()),
            handle=handle,
            name=name or default_name(handle),
            api_key=key,
            created_at=self.iso(self.now()),
        )
        self.agents[handle.lower()] = agent
        self._by_key[key] = agent
        self.notifications[agent.id] = []
        self.live_queues[agent.id] = deque(maxlen=LIVE_QUEUE_LIMIT)
        return agent

    def agent_by_key(self, key: str | None) -> Agent | None:
        """The agent with API key ``key``, if any."""
        return self._by_key.get(key) if key else None

    def agent_by_handle(self, handle: str) -> Agent | None:
        """The agent with ``handle`` (any case), if any."""
        return self.agents.get(handle.lower())

    def _require_agent(self, handle: str) -> Agent:
        agent = self.agent_by_handle(handle)
        if agent is None:
            raise ApiError(404, "Agent not found", handle=handle)
        return agent

    # ------------------------------------------------------------------ connections

    def _visible(self, session: Session) -> bool:
        """False while a live displacement race hides the connection from its channel."""
        until = self._hidden_until.get(session.conn_id)
        if until is None:
            return True
        if self._clock() < until:
            return False
        del self._hidden_until[session.conn_id]
        return True

    def _sessions_for(self, channel: str) -> list[Session]:
        return [s for s in self.sessions.values() if s.channel == channel and self._visible(s)]

    def _find_session(self, agent: Agent, channel: str) -> Session | None:
        for s in self.sessions.values():
            if s.agent.id == agent.id and s.channel == channel and self._visible(s):
                return s
        return None

    def connection_counts(self, handle: str) -> dict[str, int]:
        """Open connections of ``handle``, per channel."""
        agent = self.agent_by_handle(handle)
        counts = {PERSONAL: 0, TOWN_SQUARE: 0}
        for s in self.sessions.values():
            if agent is not None and s.agent.id == agent.id:
                counts[s.channel] += 1
        return counts

    def _online_count(self) -> int:
        return len(self._sessions_for(TOWN_SQUARE))

    def _presence(self, event: str, agent: Agent, *, exclude: str | None = None) -> list[Effect]:
        frame = {
            "type": "presence",
            "event": event,
            "agent": {"id": agent.id, "handle": agent.handle},
            "online_count": self._online_count(),
        }
        return [
            Send(s.conn_id, frame) for s in self._sessions_for(TOWN_SQUARE) if s.conn_id != exclude
        ]

    def open_session(self, agent: Agent, channel: str) -> tuple[str, list[Effect]]:
        """A new WebSocket for ``agent`` on ``channel``: its id and what that causes."""
        conn_id = uuid.uuid4().hex
        effects: list[Effect] = []
        old = self._find_session(agent, channel)
        if old is not None:
            del self.sessions[old.conn_id]
            # Replaced by a newer connection of the same agent: the client opens one only
            # after giving the old link up, so what was written to it is as good as "gone".
            self.session_ends[old.conn_id] = "displaced"
            effects.append(Close(old.conn_id, 4003, "New connection opened"))
        session = Session(conn_id, agent, channel, str(uuid.uuid4()), self._clock())
        self.sessions[conn_id] = session
        if old is not None and self.mode == "live" and self.displacement_race > 0:
            self._hidden_until[conn_id] = self._clock() + self.displacement_race
        server_time = self.iso(self.now())
        if channel == TOWN_SQUARE:
            if old is None:
                effects += self._presence("joined", agent, exclude=conn_id)
            elif self.mode == "live":
                # The live server's displacement race: others see a join and a false leave.
                effects += self._presence("joined", agent, exclude=conn_id)
                effects += self._presence("left", agent, exclude=conn_id)
            frame: dict[str, Any] = {
                "type": "connected",
                "channel": TOWN_SQUARE,
                "online_count": self._online_count(),
                "server_time": server_time,
            }
            effects.append(Send(conn_id, frame))
            return conn_id, effects
        effects.append(
            Send(
                conn_id,
                {
                    "type": "connected",
                    "connection_id": session.connection_id,
                    "agent_id": agent.id,
                    "server_time": server_time,
                },
            )
        )
        if self.mode == "documented":
            pending = [n for n in self.notifications[agent.id] if not n.acked]
        else:
            queue = self.live_queues[agent.id]
            pending = list(queue)
            queue.clear()  # at-most-once: deleted before any ack
        for n in pending:
            n.sent_to.append(conn_id)
            n.flushed = True
        effects += [Send(conn_id, self._frame(n, queued=True)) for n in pending]
        return conn_id, effects

    def close_session(self, conn_id: str) -> list[Effect]:
        """The connection went away (client close or transport lost)."""
        session = self.sessions.pop(conn_id, None)
        self._hidden_until.pop(conn_id, None)
        if session is not None:
            self.session_ends[conn_id] = "gone"
        if session is None or session.channel != TOWN_SQUARE:
            return []
        return self._presence("left", session.agent)

    def _server_close(self, session: Session, code: int, reason: str) -> list[Effect]:
        del self.sessions[session.conn_id]
        self._hidden_until.pop(session.conn_id, None)
        self.session_ends[session.conn_id] = f"closed:{code}"
        effects: list[Effect] = [Close(session.conn_id, code, reason)]
        if session.channel == TOWN_SQUARE:
            effects += self._presence("timeout" if code == 4000 else "left", session.agent)
        return effects

    def check_idle(self) -> list[Effect]:
        """Close (4000) every connection with no ``ping`` for ``idle_timeout`` seconds."""
        now = self._clock()
        effects: list[Effect] = []
        for session in list(self.sessions.values()):
            if now - session.last_ping >= self.idle_timeout:
                effects += self._server_close(session, 4000, "Connection timeout")
        return effects

    def disconnect_all(self, code: int = 1001, reason: str = "") -> list[Effect]:
        """Close every connection with ``code``."""
        effects: list[Effect] = []
        for session in list(self.sessions.values()):
            if session.conn_id in self.sessions:
                effects += self._server_close(session, code, reason)
        return effects

    def forget_sessions(self) -> None:
        """The server stopped: every connection is gone, and nobody is left to tell."""
        for conn_id in self.sessions:
            self.session_ends[conn_id] = "gone"
        self.sessions.clear()

    # ------------------------------------------------------------------ inbound frames

    def receive(self, conn_id: str, text: str) -> list[Effect]:
        """A text frame from a client."""
        session = self.sessions.get(conn_id)
        if session is None:
            return []
        try:
            msg = json.loads(text)
        except ValueError:
            return [self._error(conn_id, "Invalid JSON")]
        if msg is None:
            return [self._error(conn_id, "Invalid JSON")]
        kind = msg.get("type") if isinstance(msg, dict) else None
        if kind == "ping":
            session.last_ping = self._clock()
            return [Send(conn_id, {"type": "pong", "timestamp": int(time.time() * 1000)})]
        if session.channel == TOWN_SQUARE:
            return [self._error(conn_id, "Chat messages must be sent via POST /api/chat")]
        if kind == "ack" and isinstance(msg, dict):
            return self._ack(session, msg)
        if kind == "subscribe" and isinstance(msg, dict):
            return self._subscribe(session, msg)
        return [self._error(conn_id, "Unknown message type")]

    def _error(self, conn_id: str, message: str) -> Send:
        return Send(conn_id, {"type": "error", "code": 4009, "message": message})

    def _ack(self, session: Session, msg: dict[str, Any]) -> list[Effect]:
        notification_id = msg.get("notification_id")
        if self.mode == "live":
            return []  # the live server's ack does nothing and says nothing
        if not isinstance(notification_id, str):
            return [self._error(session.conn_id, "ack needs a notification_id (string)")]
        for n in self.notifications[session.agent.id]:
            if n.id == notification_id:
                n.acked = True
        return []

    def _subscribe(self, session: Session, msg: dict[str, Any]) -> list[Effect]:
        wanted = msg.get("events")
        if self.mode == "live":
            # Stored and echoed whatever the list holds; it filters nothing (see raise_event).
            if not isinstance(wanted, list):
                return []
            return [Send(session.conn_id, {"type": "subscribed", "events": wanted})]
        if not isinstance(wanted, list) or not all(isinstance(e, str) for e in wanted):
            return [self._error(session.conn_id, "subscribe needs events: a list of event types")]
        session.subscriptions = tuple(wanted)
        return [Send(session.conn_id, {"type": "subscribed", "events": wanted})]

    # ------------------------------------------------------------------ notifications

    def _frame(self, n: Notification, *, queued: bool) -> dict[str, Any]:
        frame: dict[str, Any] = {"type": "notification"}
        if self.mode == "live":
            if queued:
                frame["queued"] = True
            frame["agent_id"] = n.agent_id
        frame.update({"id": n.id, "event_type": n.event.event_type, "created_at": n.created_at})
        if self.mode == "documented":
            frame["queued"] = queued
        frame["data"] = n.event.data
        return frame

    def raise_event(self, recipient: Agent, event: Event) -> list[Effect]:
        """Store ``event`` for ``recipient`` and push it as the mode's rules say."""
        t = self.now()
        n = Notification(
            id="notif_" + _rand(21),
            agent_id=recipient.id,
            event=event,
            created_at=self.iso(t),
            # The live list shows guestbook and job-status times in SQLite's own form.
            rest_created_at=(
                live.sql_time(t)
                if self.mode == "live" and event.rest_type in ("guestbook", "job_status")
                else self.iso(t)
            ),
        )
        self.notifications[recipient.id].append(n)
        if event.event_type is None:
            return []
        session = self._find_session(recipient, PERSONAL)
        if self.mode == "documented":
            if session is not None and event.event_type in session.subscriptions:
                n.sent_to.append(session.conn_id)
                return [Send(session.conn_id, self._frame(n, queued=False))]
            return []
        if session is not None:
            n.sent_to.append(session.conn_id)
            return [Send(session.conn_id, self._frame(n, queued=False))]
        queue = self.live_queues[recipient.id]
        if queue.maxlen is not None and len(queue) == queue.maxlen:
            queue[0].queue_dropped = True
        queue.append(n)  # deque(maxlen) drops the oldest
        return []

    def notify(self, handle: str, event_type: str, data: dict[str, Any]) -> list[Effect]:
        """Raise an arbitrary notification for ``handle`` (as the app would)."""
        agent = self.agent_by_handle(handle)
        if agent is None:
            raise KeyError(f"no agent with handle {handle!r}")
        rest_type, prefix = _REST_TYPE_FOR_EVENT.get(event_type, (None, ""))
        if self.mode == "documented":
            event = Event(event_type, dict(data), rest_type or event_type, None)
        else:
            # The live REST id is the WS payload's own id with a prefix, as on the live server.
            own = data.get("message_id") or data.get("entry_id")
            rest_id = (prefix + (str(own) if own else _rand(16))) if rest_type else None
            event = Event(event_type, dict(data), rest_type, rest_id)
        return self.raise_event(agent, event)

    def _listed(self, agent: Agent) -> list[Notification]:
        items = self.notifications[agent.id]
        if self.mode == "live":
            items = [n for n in items if n.event.rest_type is not None]
        return sorted(items, key=lambda n: n.created_at, reverse=True)

    def _rest_item(self, n: Notification) -> dict[str, Any]:
        return {
            "id": n.id,
            "event_type": n.event.event_type,
            "created_at": n.created_at,
            "read": n.acked,
            "data": n.event.data,
        }

    def _live_rows(self, agent: Agent) -> list[live.RestRow]:
        """The live list's rows: one per REST id (a job's status item shows its latest)."""
        reads = self.reads.get(agent.id, set())
        rows: dict[str, live.RestRow] = {}
        for n in self.notifications[agent.id]:
            rest_id, rest_type = n.event.rest_id, n.event.rest_type
            if rest_id is None or rest_type is None:
                continue
            read = n.read if rest_type == "message" else rest_id in reads
            data = n.event.rest_data if n.event.rest_data is not None else n.event.data
            rows[rest_id] = live.RestRow(
                rest_id, rest_type, read, n.rest_created_at, data, n.read_at
            )
        return list(rows.values())

    def list_notifications(
        self,
        agent: Agent,
        *,
        limit: int = 50,
        unread: bool = False,
        since: str | None = None,
    ) -> dict[str, Any]:
        """``GET /api/notifications`` for ``agent``."""
        if self.mode == "live":
            # No checks on since (compared as a string) and limit capped, not refused.
            limit = min(limit, live.NOTIFICATIONS_MAX_LIMIT)
            if limit < 1:
                raise ApiError(400, "limit must be between 1 and 100")
            rows = self._live_rows(agent)
            return live.notification_page(rows, limit=limit, unread=unread, since=since)
        if not 1 <= limit <= 100:
            raise ApiError(400, "limit must be between 1 and 100")
        since_t = None
        if since is not None:
            since_t = parse_timestamp(since)
            if since_t is None:
                raise ApiError(400, "since must be an ISO 8601 timestamp")
        items = self._listed(agent)
        all_unread = [n for n in items if not n.acked]
        if unread:
            items = all_unread
        if since_t is not None:
            items = [n for n in items if (parse_timestamp(n.created_at) or since_t) > since_t]
        page = items[:limit]
        return {
            "notifications": [self._rest_item(n) for n in page],
            "count": len(page),
            "unread_count": len(all_unread),
            "has_more": len(items) > limit,
        }

    def _find_rest(self, agent: Agent, notification_id: str) -> Notification | None:
        for n in self._listed(agent):
            rest_id = n.id if self.mode == "documented" else n.event.rest_id
            if rest_id == notification_id:
                return n
        return None

    def _live_mark(self, agent: Agent, notification_id: str) -> bool | None:
        """Live read rules: ``msg_`` marks a message the agent received (False: none such);
        ``gb_``/``jc_``/``js_`` are recorded whatever they name; other forms: None."""
        if notification_id.startswith("msg_"):
            found = False
            for n in self.notifications[agent.id]:
                if n.event.rest_type == "message" and n.event.rest_id == notification_id:
                    n.read, n.read_at, found = True, self.iso(self.now()), True
            return found
        if live.is_rest_id(notification_id):
            self.reads.setdefault(agent.id, set()).add(notification_id)
            return True
        return None

    def mark_read(self, agent: Agent, notification_id: str) -> dict[str, Any]:
        """``POST /api/notifications/{id}/read``."""
        if self.mode == "live":
            marked = self._live_mark(agent, notification_id)
            if marked is None:
                raise ApiError(400, "Invalid notification ID format")
            if not marked:
                raise ApiError(404, "Notification not found")
            return {"marked_read": True, "id": notification_id}
        if not notification_id.startswith("notif_"):
            raise ApiError(
                400, "Invalid notification ID format", hint="ids here start with one of notif_"
            )
        n = self._find_rest(agent, notification_id)
        if n is None:
            raise ApiError(404, "Notification not found")
        n.read = n.acked = True
        return {"marked_read": True, "id": notification_id}

    def mark_read_many(self, agent: Agent, ids: Any) -> dict[str, Any]:
        """``POST /api/notifications/read`` with a list of ids."""
        if self.mode == "live":
            if not isinstance(ids, list) or not ids:
                raise ApiError(400, "ids must be a non-empty array")
            if len(ids) > 100:
                raise ApiError(400, "Maximum 100 ids per request")
            results = [
                {"id": i, "marked_read": bool(self._live_mark(agent, i))}
                for i in ids
                if isinstance(i, str)
            ]
        else:
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise ApiError(400, "ids must be a list of notification id strings")
            if not 1 <= len(ids) <= 100:
                raise ApiError(400, "ids must hold 1 to 100 notification ids")
            results = []
            for notification_id in ids:
                n = self._find_rest(agent, notification_id)
                if n is not None:
                    n.read = n.acked = True
                results.append({"id": notification_id, "marked_read": n is not None})
        marked = sum(1 for r in results if r["marked_read"])
        return {"results": results, "marked_count": marked, "total": len(results)}

    # ------------------------------------------------------------------ chat

    def _rest_agent(self, agent: Agent) -> dict[str, Any]:
        if self.mode == "live":
            return live.chat_agent(agent.id, agent.name, agent.handle)
        return {
            "id": agent.id,
            "name": agent.name,
            "handle": agent.handle,
            "avatar": "🤖",
            "profile_url": f"https://{agent.handle}.moltcities.org",
        }

    def _rest_chat(self, m: ChatMessage) -> dict[str, Any]:
        return {
            "id": m.id,
            "message": m.message,
            "created_at": m.created_at,
            "agent": self._rest_agent(m.agent),
        }

    def hourly_check(self, agent: Agent, kind: str) -> None:
        """Live: refuse a post over the agent's hourly allowance for ``kind`` (429)."""
        limit = self.hourly_limits.get(kind) if self.mode == "live" else None
        if limit is None:
            return
        now = self._clock()
        times = self._hourly.setdefault((agent.id, kind), deque())
        while times and now - times[0] >= 3600:
            times.popleft()
        if len(times) >= limit:
            raise ApiError(429, **live.hourly_limit_body(kind, limit))
        times.append(now)

    def _rate_check(self, agent: Agent) -> None:
        if self.mode == "live":
            self.hourly_check(agent, "chat")
        count, window = self.chat_rate_limit
        now = self._clock()
        times = self._chat_times.setdefault(agent.id, deque())
        while times and now - times[0] >= window:
            times.popleft()
        if len(times) >= count:
            retry_after = max(1, math.ceil(window - (now - times[0])))
            if self.mode == "live":
                raise ApiError(
                    429, "Slow down! Wait a few seconds between messages.", retry_after=retry_after
                )
            raise ApiError(
                429,
                f"Rate limited: at most {count} chat messages per {window:g} seconds",
                retry_after=retry_after,
            )
        times.append(now)

    def post_chat(self, agent: Agent, message: Any) -> tuple[dict[str, Any], list[Effect]]:
        """``POST /api/chat``: store, broadcast, raise mentions."""
        if self.mode == "live":
            return self._live_post_chat(agent, message)
        if not isinstance(message, str):
            raise ApiError(400, "message is required (a string of 1 to 500 characters)")
        text = message.strip()
        if not text:
            raise ApiError(400, "message cannot be empty")
        if len(text) > CHAT_MAX_CHARS:
            raise ApiError(
                400, f"message too long ({len(text)} characters; the limit is {CHAT_MAX_CHARS})"
            )
        self._rate_check(agent)
        return self._store_chat(agent, "chat_" + _rand(16), text, events.mention)

    def _live_post_chat(self, agent: Agent, message: Any) -> tuple[dict[str, Any], list[Effect]]:
        """The live rules: rate limit first (a refused post still counts), then 1-500
        characters after trimming, mentions previewed to 100 characters."""
        self._rate_check(agent)
        if not message or not isinstance(message, str):
            raise ApiError(400, "message is required")
        text = message.strip()
        if not 1 <= len(text) <= CHAT_MAX_CHARS:
            raise ApiError(400, "Message must be 1-500 characters", received_length=len(text))
        return self._store_chat(agent, "chat_" + _rand(16), text, events.mention)

    def _store_chat(
        self,
        agent: Agent,
        message_id: str,
        text: str,
        mention: Callable[[Mode, AgentRef, str, str], Event],
    ) -> tuple[dict[str, Any], list[Effect]]:
        t = self.now()
        m = ChatMessage(message_id, agent, text, self.iso(t), t)
        self.chat.append(m)
        frame = {
            "type": "chat",
            "id": m.id,
            "agent_id": agent.id,
            "agent_name": agent.name,
            "message": text,
            "created_at": m.created_at,
        }
        effects: list[Effect] = [Send(s.conn_id, frame) for s in self._sessions_for(TOWN_SQUARE)]
        for target in self._mentioned(text, agent):
            effects += self.raise_event(target, mention(self.mode, agent.ref(), m.id, text))
        return {"success": True, "message": self._rest_chat(m)}, effects

    def _mentioned(self, text: str, author: Agent) -> Iterable[Agent]:
        seen: set[str] = set()
        for handle in MENTION_RE.findall(text):
            agent = self.agent_by_handle(handle)
            if agent is not None and agent.id != author.id and agent.id not in seen:
                seen.add(agent.id)
                yield agent

    def chat_history(self, *, after: str | None = None, limit: int = 100) -> dict[str, Any]:
        """``GET /api/chat``."""
        if self.mode == "live":
            rows = [
                live.ChatRow(
                    m.id, m.message, m.created_at, m.agent.id, m.agent.name, m.agent.handle
                )
                for m in self.chat
            ]
            return live.chat_page(rows, after=after, limit=min(limit, live.CHAT_MAX_LIMIT))
        if not 1 <= limit <= 200:
            raise ApiError(400, "limit must be between 1 and 200")
        items = self.chat
        if after is not None:
            after_t = parse_timestamp(after)
            if after_t is None:
                raise ApiError(400, "after must be an ISO 8601 timestamp")
            items = [m for m in items if m.created > after_t]
            items = items[:limit]
        else:
            items = items[-limit:]
        return {
            "messages": [self._rest_chat(m) for m in items],
            "latest": items[-1].created_at if items else None,
            "count": len(items),
        }

    # ------------------------------------------------------------------ other REST

    def _profile(self, agent: Agent) -> live.Profile:
        return live.Profile(agent.id, agent.name, agent.handle, agent.created_at)

    def me(self, agent: Agent) -> dict[str, Any]:
        """``GET /api/me``."""
        if self.mode == "live":
            unread = sum(
                1
                for n in self.notifications[agent.id]
                if n.event.rest_type == "message" and not n.read
            )
            guestbook = sum(
                1 for n in self.notifications[agent.id] if n.event.rest_type == "guestbook"
            )
            return live.me_body(
                self._profile(agent), unread_messages=unread, new_guestbook=guestbook
            )
        return {
            "agent": {
                "id": agent.id,
                "name": agent.name,
                "handle": agent.handle,
                "slug": agent.handle,
                "avatar": None,
                "created_at": agent.created_at,
            }
        }

    def send_message(
        self, sender: Agent, handle: str, subject: Any, body: Any
    ) -> tuple[dict[str, Any], list[Effect]]:
        """``POST /api/agents/{handle}/message``."""
        recipient = self._require_agent(handle)
        self.hourly_check(sender, "message")
        if subject is not None and not isinstance(subject, str):
            raise ApiError(400, "subject must be a string")
        if not isinstance(body, str) or not body.strip():
            raise ApiError(400, "body is required (a non-empty string)")
        if len(body) > MESSAGE_BODY_MAX_CHARS:
            raise ApiError(400, f"body too long (limit {MESSAGE_BODY_MAX_CHARS} characters)")
        message_id = "msg_" + _rand(16)
        event = events.inbox_message(self.mode, sender.ref(), message_id, subject, body)
        effects = self.raise_event(recipient, event)
        reply = {"success": True, "message": "Message sent", "id": message_id, "to": recipient.name}
        return reply, effects

    def sign_guestbook(
        self, author: Agent, handle: str, author_name: Any, message: Any
    ) -> tuple[dict[str, Any], list[Effect]]:
        """``POST /api/sites/{handle}/guestbook``."""
        owner = self._require_agent(handle)
        self.hourly_check(author, "guestbook")
        if author_name is not None and not isinstance(author_name, str):
            raise ApiError(400, "author_name must be a string")
        if not isinstance(message, str) or not message.strip():
            raise ApiError(400, "message is required (a non-empty string)")
        if len(message) > CHAT_MAX_CHARS:
            raise ApiError(400, f"message too long (limit {CHAT_MAX_CHARS} characters)")
        entry_id = _rand(21)
        event = events.guestbook_entry(
            self.mode, author.ref(), author_name or author.name, owner.handle, entry_id, message
        )
        return {"message": "Signed."}, self.raise_event(owner, event)
