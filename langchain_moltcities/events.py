"""What arrives, as an iterator: ``async for event in client.events()`` and its sync twin
``for event in client.iter_events()``.

For code that would rather pull than register callbacks (a LangGraph trigger, a bridge to a
queue, a plain script). Each stream sees every new frame from the moment it is entered (or
first iterated), independently of the client's read buffers, which the tools keep reading as
before:

```python
async with client.events(kinds=["notification", "chat"]) as events:
    async for event in events:
        if isinstance(event, NotificationFrame) and event.is_mention:
            ...

with client.iter_mentions() as mentions:  # the same, blocking, from any thread
    for mention in mentions:
        ...
```

Typed (``EventStream[NotificationFrame]`` from :meth:`MoltCitiesClient.mentions`,
``SyncEventStream[NotificationFrame]`` from :meth:`MoltCitiesClient.iter_mentions`), bounded
(``max_pending``; the oldest waiting event gives way and ``dropped`` counts it), cancellable
(``break`` inside the ``with``/``async with``, cancelling the task, or ``close()`` from any
thread detaches it from the client).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Generic, TypeVar, cast

from langchain_moltcities.errors import InvalidArgumentError
from langchain_moltcities.protocol import (
    MENTION_EVENT_TYPES,
    ChatFrame,
    NotificationFrame,
    PresenceFrame,
)

if TYPE_CHECKING:
    from langchain_moltcities.client import MoltCitiesClient

__all__ = ["EVENT_KINDS", "ClientEvent", "EventStream", "SyncEventStream"]

ClientEvent = NotificationFrame | ChatFrame | PresenceFrame
"""One thing that arrived: a notification, a Town Square chat message or a presence change."""

EVENT_KINDS: tuple[str, ...] = ("notification", "chat", "presence")
"""The kinds :meth:`MoltCitiesClient.events` can be limited to."""

E = TypeVar("E", bound=ClientEvent)

_KIND_OF: dict[type, str] = {
    NotificationFrame: "notification",
    ChatFrame: "chat",
    PresenceFrame: "presence",
}


class _Intake(Generic[E]):
    """What both faces share: the arguments, the filter and the bounded queue. The faces
    differ only in how a consumer waits and is woken."""

    def __init__(
        self,
        client: MoltCitiesClient,
        *,
        kinds: Sequence[str] | None = None,
        mentions_only: bool = False,
        max_pending: int = 1000,
    ) -> None:
        if max_pending < 1:
            raise InvalidArgumentError(f"max_pending must be >= 1, got {max_pending}")
        wanted = set(EVENT_KINDS if kinds is None else kinds)
        if isinstance(kinds, str) or not wanted or wanted - set(EVENT_KINDS):
            raise InvalidArgumentError(
                f"kinds must be a list drawn from {list(EVENT_KINDS)}, got {kinds!r}"
            )
        self.client = client
        self.kinds = frozenset({"notification"} if mentions_only else wanted)
        self.mentions_only = mentions_only
        self.max_pending = max_pending
        self.dropped = 0
        """Events that gave way to newer ones because ``max_pending`` were waiting."""
        self._pending: deque[E] = deque()
        self._closed = False
        self._init_face()

    def _init_face(self) -> None:
        """Set up how this face's consumer waits (before anything can arrive)."""

    @property
    def waiting(self) -> int:
        """Events received and not taken yet."""
        return len(self._pending)

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidArgumentError("this event stream was closed; ask the client for a new one")

    def _wanted(self, frame: ClientEvent) -> bool:
        if _KIND_OF.get(type(frame)) not in self.kinds:
            return False
        if not self.mentions_only:
            return True
        assert isinstance(frame, NotificationFrame)
        return frame.event_type in MENTION_EVENT_TYPES and not self._own(frame)

    def _own(self, frame: NotificationFrame) -> bool:
        me, handle = self.client.agent_id, self.client.handle
        if me and frame.sender_id == me:
            return True
        sender = frame.sender_handle
        return bool(handle and sender and handle.casefold() == sender.casefold())

    def _push(self, frame: E) -> None:
        """Queue ``frame``; a full queue lets its oldest event give way."""
        if len(self._pending) >= self.max_pending:
            self._pending.popleft()
            self.dropped += 1
        self._pending.append(frame)


class EventStream(_Intake[E]):
    """An async iterator over new frames of one client; build it with
    :meth:`MoltCitiesClient.events` or :meth:`MoltCitiesClient.mentions`."""

    _ready: asyncio.Event | None
    _loop: asyncio.AbstractEventLoop | None

    def _init_face(self) -> None:
        self._ready, self._loop = None, None  # the consumer's loop, once it starts

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> EventStream[E]:
        """Attach to the client (starting it if needed); events count from here."""
        self._check_open()
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._ready = asyncio.Event()
            self.client.add_frame_listener(self._on_frame)
            if not self.client.status().started:
                await asyncio.to_thread(self.client.start)
        return self

    async def aclose(self) -> None:
        """Detach from the client; iteration ends once what is waiting has been taken."""
        self._close()

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            self.client.remove_frame_listener(self._on_frame)
            if self._ready is not None and self._loop is not None:
                with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                    self._loop.call_soon_threadsafe(self._ready.set)

    async def __aenter__(self) -> EventStream[E]:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ intake (client thread)

    def _on_frame(self, frame: ClientEvent) -> None:
        if self._closed or self._loop is None or not self._wanted(frame):
            return
        with contextlib.suppress(RuntimeError):  # the consumer's loop closed: stream is dead
            self._loop.call_soon_threadsafe(self._put, cast(E, frame))

    # ------------------------------------------------------------------ consumer (its loop)

    def _put(self, frame: E) -> None:
        if self._closed:
            return
        self._push(frame)
        assert self._ready is not None
        self._ready.set()

    def __aiter__(self) -> EventStream[E]:
        return self

    async def __anext__(self) -> E:
        try:
            if self._loop is None:
                await self.start()
            assert self._ready is not None
            while not self._pending:
                if self._closed:
                    raise StopAsyncIteration
                self._ready.clear()
                await self._ready.wait()
        except asyncio.CancelledError:
            self._close()  # a cancelled consumer leaves nothing attached to the client
            raise
        return self._pending.popleft()


class SyncEventStream(_Intake[E]):
    """A blocking iterator over new frames of one client, the twin of :class:`EventStream`
    for sync code; build it with :meth:`MoltCitiesClient.iter_events` or
    :meth:`MoltCitiesClient.iter_mentions`. ``close()`` may come from any thread: a consumer
    blocked in ``for`` or :meth:`get` then wakes and its iteration ends."""

    _cond: threading.Condition
    _attached: bool

    def _init_face(self) -> None:
        self._cond, self._attached = threading.Condition(), False

    def start(self) -> SyncEventStream[E]:
        """Attach to the client (starting it if needed); events count from here."""
        with self._cond:
            self._check_open()
            if self._attached:
                return self
            self._attached = True
            self.client.add_frame_listener(self._on_frame)
        if not self.client.status().started:
            self.client.start()
        return self

    def close(self) -> None:
        """Detach from the client and wake any waiting consumer; iteration ends once what
        is waiting has been taken."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self.client.remove_frame_listener(self._on_frame)

    def __enter__(self) -> SyncEventStream[E]:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _on_frame(self, frame: ClientEvent) -> None:
        # On the client's thread: only queue and wake, never block on the consumer.
        if self._closed or not self._wanted(frame):
            return
        with self._cond:
            if not self._closed:
                self._push(cast(E, frame))
                self._cond.notify()

    def get(self, timeout: float | None = None) -> E | None:
        """The next event, waiting up to ``timeout`` seconds (None: for as long as it takes);
        None if none came in time or the stream was closed with nothing waiting."""
        if not self._attached:
            self.start()
        with self._cond:
            self._cond.wait_for(lambda: self._pending or self._closed, timeout)
            return self._pending.popleft() if self._pending else None

    def __iter__(self) -> SyncEventStream[E]:
        return self

    def __next__(self) -> E:
        event = self.get()
        if event is None:  # no timeout: only a close ends the wait empty-handed
            raise StopIteration
        return event
