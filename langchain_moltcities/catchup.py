"""REST catch-up: Town Square back-fill with honest gap reports, and the notification poll.

The live server's ``GET /api/chat?after=X&limit=N`` returns the *newest* N messages after X
(there is no ``before``): with more than N missed, the older ones cannot be fetched at all. A
full page is the only sign, so :class:`ChatCatchUp` reports it as a :class:`ChatGap` (the time
span that may be missing) instead of pretending the gap was filled. A server that pages oldest
first instead (the documented local server does) is told apart by one probe (``limit=1``) and
paged forward as before. Channels call this room; it never touches a socket.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from langchain_moltcities.acks import AckBook
from langchain_moltcities.directory import HandleDirectory, handle_from_agent_body
from langchain_moltcities.errors import ApiError, MoltCitiesError
from langchain_moltcities.protocol import (
    ChatFrame,
    NotificationFrame,
    RestChatMessage,
    RestNotification,
    parse_timestamp,
)
from langchain_moltcities.rest import RestApi

__all__ = [
    "UNMATCHABLE_REST_TYPES",
    "ChatCatchUp",
    "ChatGap",
    "detect_gap",
    "look_up_handle",
    "oldest_first",
    "poll_notifications",
    "send_reads",
]

_log = logging.getLogger("langchain_moltcities.catchup")
_MAX_PAGES = 20
_MAX_GAPS_KEPT = 100
# Live REST items whose ids can't be tied to the socket frame of the same event (the socket
# payload carries no attempt or change id). While the socket is only down for a while, a
# fallback poll leaves them to the socket's back-log instead of delivering them twice.
UNMATCHABLE_REST_TYPES = frozenset({"job_attempt", "job_status"})


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class ChatGap:
    """Town Square messages posted after ``after`` and before ``until`` may be missing."""

    after: str
    until: str | None
    page_size: int

    def as_dict(self) -> dict[str, object]:
        """The gap as plain data."""
        return asdict(self)

    def describe(self) -> str:
        """One line for a reader: which span may be missing, and why."""
        return (
            f"Possible gap: Town Square messages posted between {_hhmm(self.after)} and "
            f"{_hhmm(self.until)} UTC may be missing (more than {self.page_size} were posted "
            f"while this client was disconnected; the server returns only the newest "
            f"{self.page_size})."
        )


def _hhmm(value: str | None) -> str:
    parsed = parse_timestamp(value)
    return parsed.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if parsed else "?"


def detect_gap(
    after: str | None, messages: Sequence[RestChatMessage], limit: int
) -> ChatGap | None:
    """A full page read from a cursor may hide older messages (the server keeps the newest)."""
    if after is None or len(messages) < limit:
        return None
    return ChatGap(after=after, until=messages[0].created_at, page_size=limit)


def oldest_first(items: Sequence[RestNotification]) -> list[RestNotification]:
    """REST notifications in time order (the live list is per type, newest first)."""
    floor = datetime.min.replace(tzinfo=UTC)
    return sorted(items, key=lambda n: parse_timestamp(n.created_at) or floor)


class ChatCatchUp:
    """The Town Square cursor of one channel, its back-fill and the gaps it found."""

    def __init__(
        self,
        rest: RestApi,
        *,
        limit: int,
        deliver: Callable[[ChatFrame], None],
        name: str = "town-square",
    ) -> None:
        self._rest = rest
        self.limit = limit
        self._deliver = deliver
        self._name = name
        self.cursor: str | None = None
        self._cursor_dt: datetime | None = None
        self._from_server = False
        # None until a full page tells which way this server cuts its pages.
        self.newest_pages: bool | None = None
        self.gaps: deque[ChatGap] = deque(maxlen=_MAX_GAPS_KEPT)
        self._unreported: deque[ChatGap] = deque(maxlen=_MAX_GAPS_KEPT)
        self.gaps_found = 0
        self.backfilled = 0

    # ------------------------------------------------------------------ cursor

    @property
    def started(self) -> bool:
        """Whether the cursor was set (the catch-up has a place to start from)."""
        return self.cursor is not None

    def start_now(self) -> None:
        """First connect: chat from now on (by our clock until the server tells its own)."""
        if self.cursor is None:
            self.cursor = _now_iso()
            self._cursor_dt = parse_timestamp(self.cursor)

    def resume(self, cursor: str) -> bool:
        """Start from a stored cursor (a restart): the first connect back-fills from it."""
        dt = parse_timestamp(cursor)
        if dt is None:
            return False
        self.cursor, self._cursor_dt, self._from_server = cursor, dt, True
        return True

    def server_time(self, value: str | None) -> None:
        """The server's clock beats ours for ``after=``: no gap from clock skew."""
        if self._from_server or not value or (dt := parse_timestamp(value)) is None:
            return
        self.cursor, self._cursor_dt, self._from_server = value, dt, True

    def advance(self, frame: ChatFrame) -> None:
        """Move the cursor past ``frame``."""
        dt = frame.created
        if (
            frame.created_at
            and dt is not None
            and (not self._from_server or self._cursor_dt is None or dt > self._cursor_dt)
        ):
            # A local-clock baseline gives way to the first server timestamp, earlier or not.
            self.cursor, self._cursor_dt, self._from_server = frame.created_at, dt, True

    # ------------------------------------------------------------------ back-fill

    async def backfill(self) -> int:
        """Fetch chat posted after the cursor; raises the REST error if a call fails.

        The cursor moves only past what was delivered, so a failed call loses nothing.
        """
        self.start_now()
        fetched = 0
        for _ in range(_MAX_PAGES):
            after = self.cursor
            page = await self._rest.chat_history(after=after, limit=self.limit)
            messages = page.messages
            gap = detect_gap(after, messages, self.limit)
            if gap is not None and self.newest_pages is None:
                self.newest_pages = await self._pages_are_newest(after, messages)
            if gap is not None and self.newest_pages:
                self._report(gap)
            for message in messages:
                chat = message.to_chat()
                self.advance(chat)
                fetched += 1
                self.backfilled += 1
                self._deliver(chat)
            if gap is None or self.newest_pages or self.cursor == after:
                return fetched
        return fetched

    async def _pages_are_newest(self, after: str | None, page: Sequence[RestChatMessage]) -> bool:
        """Whether a page holds the newest messages after ``after`` (live) or the oldest."""
        probe = await self._rest.chat_history(after=after, limit=1)
        return not (probe.messages and probe.messages[0].id == page[0].id)

    def _report(self, gap: ChatGap) -> None:
        self.gaps.append(gap)
        self._unreported.append(gap)
        self.gaps_found += 1
        _log.warning(
            "%s: more than %d chat messages were posted while disconnected; the server returns "
            "only the newest %d, so messages between %s and %s may be missing (status: "
            "chat_gaps)",
            self._name,
            gap.page_size,
            gap.page_size,
            gap.after,
            gap.until or "?",
        )

    def take_unreported(self) -> list[ChatGap]:
        """Gaps not yet shown to a reader (each is shown once)."""
        taken = list(self._unreported)
        self._unreported.clear()
        return taken

    # Plain data for a persisted state.
    def snapshot(self) -> dict[str, object]:
        """The cursor and the gaps as plain data."""
        return {"cursor": self.cursor, "gaps": [g.as_dict() for g in self.gaps]}


async def poll_notifications(
    rest: RestApi,
    deliver: Callable[[NotificationFrame], None],
    *,
    skip_unmatchable: bool,
) -> int:
    """One REST poll of unread notifications, delivered oldest first; how many came."""
    page = await rest.list_notifications(unread=True, limit=100)
    count = 0
    for item in oldest_first(page.notifications):
        if skip_unmatchable and item.type in UNMATCHABLE_REST_TYPES:
            continue
        deliver(item.to_notification())
        count += 1
    return count


async def send_reads(rest: RestApi, book: AckBook, rest_ids: Sequence[str]) -> None:
    """Mark ``rest_ids`` read over REST (the live server's only "read"); what fails for a
    reason that may pass stays in ``book.unsent_reads`` for the next ack."""
    todo = list(dict.fromkeys(rest_ids))
    if len(todo) > 1:
        # A hundred per request (a busy agent acks many at once); a batch the server refuses
        # goes item by item, so one bad id can't hold back the rest.
        refused: list[str] = []
        for i in range(0, len(todo), 100):
            chunk = todo[i : i + 100]
            try:
                await rest.mark_read_many(chunk)
            except ApiError:
                refused += chunk
            except MoltCitiesError as exc:  # unreachable: keep the rest for later
                book.read_pending(todo[i:])
                _log.info("marking %d item(s) read failed (retried later): %s", len(todo[i:]), exc)
                return
            else:
                for rid in chunk:
                    book.read_done(rid)
        todo = refused
    for rid in todo:
        try:
            await rest.mark_read(rid)
        except ApiError as exc:
            if exc.status in (400, 404):
                book.read_done(rid)  # the server will never take it: don't retry forever
            else:
                book.read_pending([rid])
        except MoltCitiesError as exc:
            book.read_pending([rid])
            _log.info("marking %s read failed (retried with the next ack): %s", rid, exc)
        else:
            book.read_done(rid)


async def look_up_handle(rest: RestApi, directory: HandleDirectory, agent_id: str) -> None:
    """``GET /api/agents/{id}`` for a handle; an id it can't resolve is not asked again."""
    try:
        handle = handle_from_agent_body(await rest.agent(agent_id))
    except MoltCitiesError as exc:
        _log.debug("no handle for agent %s: %s", agent_id[:40], exc)
        handle = None
    if not (handle and directory.learn(agent_id, handle)):
        directory.missed(agent_id)
