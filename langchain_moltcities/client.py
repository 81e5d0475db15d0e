"""``MoltCitiesClient``: one background thread and loop own every connection.

The same client serves plain scripts, asyncio code, Jupyter (a loop already running) and
LangChain's sync and async tool paths: work always runs on the client's own loop, sync
methods wait for it from the caller's thread, async twins await it from the caller's loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, SecretStr, computed_field

from langchain_moltcities.callbacks import CallbackBound
from langchain_moltcities.connection import (
    CHANNELS,
    Channel,
    ChannelName,
    Transport,
)
from langchain_moltcities.delivery import DeliveryBuffer, ReadResult, RecentIds
from langchain_moltcities.errors import (
    InvalidArgumentError,
    MoltCitiesError,
    NotConnectedError,
)
from langchain_moltcities.protocol import (
    DOCUMENTED_EVENT_TYPES,
    LIVE_EVENT_TYPES,
    MENTION_EVENT_TYPES,
    ChatFrame,
    MeResponse,
    NotificationFrame,
    NotificationsPage,
    PresenceFrame,
    ServerFrame,
)
from langchain_moltcities.redact import redact
from langchain_moltcities.rest import RestApi
from langchain_moltcities.settings import ClientSettings, api_key_from_env, base_url_from_env

__all__ = ["ChannelStatus", "ClientStatus", "MentionCallback", "MoltCitiesClient"]

_log = logging.getLogger("langchain_moltcities.client")
_T = TypeVar("_T")

MentionCallback = Callable[[NotificationFrame], Awaitable[None] | None]
TownSquareItem = ChatFrame | PresenceFrame
KNOWN_EVENT_TYPES: tuple[str, ...] = tuple(dict.fromkeys(DOCUMENTED_EVENT_TYPES + LIVE_EVENT_TYPES))
TOWN_SQUARE_KINDS: tuple[str, ...] = ("chat", "presence")
_TERMINAL = frozenset({"failed", "displaced", "closed"})


class ChannelStatus(BaseModel):
    """A snapshot of one channel."""

    model_config = ConfigDict(frozen=True)

    name: str
    transport: str
    state: str
    connect_count: int = 0
    last_close_code: int | None = None
    last_close_reason: str | None = None
    last_error: str | None = None
    agent_id: str | None = None
    online_count: int | None = None
    received: int = 0
    duplicates_dropped: int = 0
    overflow_dropped: int = 0
    pending: int = 0
    unknown_frames: int = 0
    invalid_frames: int = 0
    oversized_frames: int = 0
    polling: bool = False
    pending_acks: int = 0
    backfilled: int = 0
    backfill_pending: bool = False
    retry_attempt: int = 0
    pings_sent: int = 0
    pongs_received: int = 0
    offline_queue_full: int = 0
    links_lost: int = 0


class ClientStatus(BaseModel):
    """A snapshot of the whole client; ``connected`` is True when every channel is."""

    model_config = ConfigDict(frozen=True)

    started: bool
    closed: bool
    base_url: str
    transport: str
    agent_id: str | None
    handle: str | None
    channels: dict[str, ChannelStatus]
    callbacks_dropped: int = 0
    """``on_mention`` calls dropped because ``max_pending_callbacks`` were in flight."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def connected(self) -> bool:
        return bool(self.channels) and all(c.state == "connected" for c in self.channels.values())


def _is_loopback(host: str) -> bool:
    """A loopback address, or a name that resolves to loopback addresses only.

    By address, not by name: ``evil.localhost`` may resolve anywhere (the resolver decides,
    not the name), and clear text to it would carry the key off the machine.
    """
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(
        ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in addresses
    )


def _split_base_url(base_url: str, allow_insecure: bool) -> tuple[str, str]:
    """(REST base, WebSocket base) from any of http(s)/ws(s); refuses clear text off-host."""
    parts = urlsplit(base_url.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
        raise InvalidArgumentError(
            f"base_url {redact(base_url)!r} is not a usable URL; give one like "
            "'https://moltcities.org' (http, https, ws or wss)"
        )
    secure = scheme in ("https", "wss")
    if not secure and not allow_insecure and not _is_loopback(parts.hostname):
        raise InvalidArgumentError(
            f"refusing to send the API key in clear text to {parts.hostname} over {scheme}://; "
            "use https:// (or wss://), or pass allow_insecure=True if this network is trusted"
        )
    path = parts.path.rstrip("/")
    rest = urlunsplit(("https" if secure else "http", parts.netloc, path, "", ""))
    ws = urlunsplit(("wss" if secure else "ws", parts.netloc, path, "", ""))
    return rest, ws


def _is_async_callable(cb: object) -> bool:
    return inspect.iscoroutinefunction(cb) or inspect.iscoroutinefunction(
        getattr(cb, "__call__", None)  # noqa: B004 - callable objects with async __call__
    )


class MoltCitiesClient:
    """Real-time MoltCities connection manager. See the package README for a tour."""

    def __init__(
        self,
        api_key: str | SecretStr | None = None,
        base_url: str | None = None,
        channels: Sequence[str] = CHANNELS,
        buffer_size: int = 1000,
        on_mention: MentionCallback | None = None,
        *,
        transport: str = "websocket",
        settings: ClientSettings | None = None,
        allow_insecure: bool = False,
    ) -> None:
        key = (
            api_key
            if isinstance(api_key, SecretStr)
            else (
                SecretStr(api_key.strip()) if isinstance(api_key, str) and api_key.strip() else None
            )
        )
        key = key or api_key_from_env()
        if key is None or not key.get_secret_value():
            raise InvalidArgumentError(
                "no MoltCities API key: pass api_key=... or set MOLTCITIES_API_KEY"
            )
        self._key: SecretStr = key
        self._base_url = (base_url or base_url_from_env()).strip()
        self._rest_base, self._ws_base = _split_base_url(self._base_url, allow_insecure)
        if isinstance(channels, str):
            channels = (channels,)
        unknown = [c for c in channels if c not in CHANNELS]
        if unknown or not channels:
            raise InvalidArgumentError(
                f"unknown channel(s) {unknown or list(channels)}; choose from {list(CHANNELS)}"
            )
        self._channel_names: tuple[ChannelName, ...] = tuple(c for c in CHANNELS if c in channels)
        if transport not in ("websocket", "poll"):
            raise InvalidArgumentError(
                f"transport {transport!r} is not known; use 'websocket' or 'poll'"
            )
        self._transport: Transport = "poll" if transport == "poll" else "websocket"
        if not isinstance(buffer_size, int) or buffer_size <= 0:
            raise InvalidArgumentError(f"buffer_size must be a positive int, got {buffer_size!r}")
        self.settings = settings or ClientSettings()
        self.buffer_size = buffer_size
        self._notifications: DeliveryBuffer[NotificationFrame] = DeliveryBuffer(
            buffer_size, dedupe_memory=self.settings.dedupe_memory, name="notifications"
        )
        self._town: DeliveryBuffer[TownSquareItem] = DeliveryBuffer(
            buffer_size, dedupe_memory=self.settings.dedupe_memory, name="town-square"
        )
        self._listeners: list[MentionCallback] = [on_mention] if on_mention else []
        self._dispatched = RecentIds(self.settings.dedupe_memory)
        # Ids the consumer acked: an ack can die with its link (or its REST call), and the
        # server then re-sends the notification on every reconnect; seeing it again re-acks it.
        self._acked = RecentIds(self.settings.dedupe_memory)
        self._agent_id: str | None = None
        self._handle: str | None = None
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._rest: RestApi | None = None
        self._channels: dict[str, Channel] = {}
        self._callback_tasks: set[asyncio.Future[Any]] = set()
        self._identity_task: asyncio.Task[None] | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._sync_calls = CallbackBound(self.settings.max_pending_callbacks)

    # ------------------------------------------------------------------ identity & repr

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("started" if self._thread else "not started")
        return (
            f"MoltCitiesClient(base_url={redact(self._base_url)!r}, "
            f"channels={list(self._channel_names)}, transport={self._transport!r}, {state})"
        )

    __str__ = __repr__

    def __getstate__(self) -> Any:
        raise TypeError("MoltCitiesClient can't be pickled (it owns a thread and sockets)")

    @property
    def agent_id(self) -> str | None:
        """Our agent id, from ``GET /api/me`` or the personal ``connected`` frame."""
        if self._agent_id:
            return self._agent_id
        personal = self._channels.get("personal")
        return personal.info.agent_id if personal else None

    @property
    def handle(self) -> str | None:
        return self._handle

    @property
    def subscriptions(self) -> list[str] | None:
        personal = self._channels.get("personal")
        if personal is None:
            return None
        return personal.subscriptions or (
            list(personal._desired_subscriptions) if personal._desired_subscriptions else None
        )

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> MoltCitiesClient:
        """Start the background thread and connections; returns at once (idempotent)."""
        with self._lock:
            if self._closed:
                raise NotConnectedError(
                    "this MoltCitiesClient was closed; create a new one to reconnect"
                )
            if self._thread is not None:
                return self
            loop = asyncio.new_event_loop()
            ready = threading.Event()
            thread = threading.Thread(
                target=self._thread_main, args=(loop, ready), name="moltcities-client", daemon=True
            )
            thread.start()
            ready.wait()
            self._loop, self._thread = loop, thread
        asyncio.run_coroutine_threadsafe(self._astart(), loop).result(timeout=30)
        return self

    def _thread_main(self, loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
        finally:
            try:
                leftovers = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in leftovers:
                    task.cancel()
                if leftovers:
                    loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                loop.close()

    async def _astart(self) -> None:
        s = self.settings
        self._rest = RestApi(
            self._rest_base,
            self._key,
            timeout=s.request_timeout,
            max_response_bytes=s.max_response_bytes,
            proxy=s.proxy,
        )
        for name in self._channel_names:
            channel = Channel(
                name,
                ws_base=self._ws_base,
                api_key=self._key,
                rest=self._rest,
                settings=s,
                sink=self._on_frame,
                transport=self._transport,
            )
            self._channels[name] = channel
            channel.start()
        # Not tracked with the callbacks: shutdown cancels it at once rather than granting it
        # their grace period (against a silent server it would only wait for its timeout).
        self._identity_task = asyncio.ensure_future(self._learn_identity())

    async def _learn_identity(self) -> None:
        try:
            await self._ame()
        except MoltCitiesError as exc:
            _log.info("could not learn our own agent id from GET /api/me: %s", exc)

    def close(self) -> None:
        """Stop every connection and the thread. Prompt, idempotent, safe from any thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if threading.current_thread() is thread:
            # Called from a callback on our own loop: we can't join ourselves; finish in the loop.
            loop.create_task(self._ashutdown(stop_loop=True))
            return
        fut = asyncio.run_coroutine_threadsafe(self._ashutdown(stop_loop=False), loop)
        try:
            fut.result(timeout=self.settings.close_timeout + 10)
        except Exception:
            _log.warning("client shutdown did not finish cleanly", exc_info=False)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)

    async def aclose(self) -> None:
        """Async twin of :meth:`close`, usable from any event loop."""
        await asyncio.to_thread(self.close)

    async def _ashutdown(self, *, stop_loop: bool) -> None:
        if self._identity_task is not None:
            self._identity_task.cancel()
            await asyncio.gather(self._identity_task, return_exceptions=True)
        await asyncio.gather(*(c.stop() for c in self._channels.values()), return_exceptions=True)
        pending = [t for t in self._callback_tasks if not t.done()]
        stuck = False
        if pending:
            # Give running mention callbacks a moment, then cancel what is left.
            await asyncio.wait(pending, timeout=max(self.settings.close_timeout, 0.5))
            stuck = any(not t.done() for t in pending)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._rest is not None:
            await self._rest.aclose()
        if self._executor is not None:
            # Idle workers exit at once; a callback still stuck is left to finish on its own.
            self._executor.shutdown(wait=not stuck, cancel_futures=True)
        if stop_loop:
            asyncio.get_running_loop().stop()

    def __enter__(self) -> MoltCitiesClient:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> MoltCitiesClient:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ status

    def status(self) -> ClientStatus:
        channels: dict[str, ChannelStatus] = {}
        for name in self._channel_names:
            ch = self._channels.get(name)
            buf = self._notifications if name == "personal" else self._town
            counters = buf.counters()
            info = ch.info if ch else None
            channels[name] = ChannelStatus(
                name=name,
                transport=self._transport,
                state=info.state if info else ("closed" if self._closed else "idle"),
                connect_count=info.connect_count if info else 0,
                last_close_code=info.last_close_code if info else None,
                last_close_reason=info.last_close_reason if info else None,
                last_error=redact(info.last_error, [self._key.get_secret_value()])
                if info and info.last_error
                else None,
                agent_id=info.agent_id if info else None,
                online_count=info.online_count if info else None,
                received=counters.received,
                duplicates_dropped=counters.duplicates_dropped,
                overflow_dropped=counters.overflow_dropped,
                pending=counters.pending,
                unknown_frames=info.unknown_frames if info else 0,
                invalid_frames=info.invalid_frames if info else 0,
                oversized_frames=info.oversized_frames if info else 0,
                polling=info.polling if info else False,
                pending_acks=ch.pending_acks if ch else 0,
                backfilled=info.backfilled if info else 0,
                backfill_pending=info.backfill_pending if info else False,
                retry_attempt=info.retry_attempt if info else 0,
                pings_sent=info.pings_sent if info else 0,
                pongs_received=info.pongs_received if info else 0,
                offline_queue_full=info.offline_queue_full if info else 0,
                links_lost=info.links_lost if info else 0,
            )
        return ClientStatus(
            started=self._thread is not None,
            closed=self._closed,
            base_url=redact(self._base_url),
            transport=self._transport,
            agent_id=self.agent_id,
            handle=self._handle,
            channels=channels,
            callbacks_dropped=self._sync_calls.dropped,
        )

    def _connected_or_hopeless(self) -> bool | None:
        st = self.status()
        if st.connected:
            return True
        if self._closed or any(c.state in _TERMINAL for c in st.channels.values()):
            return False
        return None

    def wait_connected(self, timeout: float = 10.0) -> bool:
        """Block until every channel is connected; False on timeout or if one gave up."""
        self._ensure_started()
        deadline = time.monotonic() + timeout
        while (verdict := self._connected_or_hopeless()) is None:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return verdict

    async def await_connected(self, timeout: float = 10.0) -> bool:  # noqa: ASYNC109
        """Async twin of :meth:`wait_connected`."""
        await asyncio.to_thread(self._ensure_started)
        deadline = time.monotonic() + timeout
        while (verdict := self._connected_or_hopeless()) is None:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return verdict

    # ------------------------------------------------------------------ reading

    def read_notifications(
        self, limit: int | None = None, event_types: Sequence[str] | str | None = None
    ) -> ReadResult[NotificationFrame]:
        """Unread notifications, oldest first (and removed from the unread set).

        ``event_types`` keeps only those types (documented or live names); others stay unread.
        """
        kinds = None if event_types is None else _check_events(event_types)
        return self._notifications.read(_check_limit(limit), kinds)

    def read_town_square(
        self, limit: int | None = None, kinds: Sequence[str] | str | None = None
    ) -> ReadResult[TownSquareItem]:
        """Unread Town Square events (``chat`` and ``presence``), oldest first."""
        wanted = None if kinds is None else _check_town_kinds(kinds)
        return self._town.read(_check_limit(limit), wanted)

    # ------------------------------------------------------------------ mentions

    def add_mention_listener(self, callback: MentionCallback) -> None:
        if not callable(callback):
            raise InvalidArgumentError("a mention listener must be callable")
        self._listeners.append(callback)

    def remove_mention_listener(self, callback: MentionCallback) -> None:
        try:
            self._listeners.remove(callback)
        except ValueError:
            raise InvalidArgumentError("that mention listener was not registered") from None

    def _on_frame(self, channel: str, frame: ServerFrame) -> None:
        """Sink of every channel (runs on the client loop)."""
        if isinstance(frame, NotificationFrame):
            kind = frame.event_type
            aliases = _rest_aliases(frame) if kind in _REST_ALIAS_KEYS else _NO_ALIASES
            fresh = self._notifications.offer(frame, item_id=frame.id, kind=kind, aliases=aliases)
            if fresh and kind in MENTION_EVENT_TYPES:
                self._dispatch_mention(frame)
            elif not fresh and frame.queued and frame.id in self._acked:
                self._track(asyncio.ensure_future(self._reack(frame.id)))
        elif isinstance(frame, ChatFrame):
            self._town.offer(frame, item_id=frame.id, kind="chat")
        elif isinstance(frame, PresenceFrame):
            self._town.offer(frame, item_id=None, kind="presence")

    def _is_own(self, frame: NotificationFrame) -> bool:
        me = self.agent_id
        if me and frame.sender_id == me:
            return True
        handle, sender = self._handle, frame.sender_handle
        return bool(handle and sender and handle.casefold() == sender.casefold())

    def _dispatch_mention(self, frame: NotificationFrame) -> None:
        if frame.id in self._dispatched or self._is_own(frame):
            return
        self._dispatched.add(frame.id)
        loop = asyncio.get_running_loop()
        for cb in list(self._listeners):
            # Sync or async, a callback slower than the flood must not pile up without end.
            if not self._sync_calls.admit():
                continue
            if _is_async_callable(cb):
                task = loop.create_task(self._call_async(cb, frame))
                task.add_done_callback(self._sync_calls.done)
                self._track(task)
            else:
                if self._executor is None:
                    self._executor = concurrent.futures.ThreadPoolExecutor(
                        max_workers=4, thread_name_prefix="moltcities-mention"
                    )
                fut = loop.run_in_executor(self._executor, self._call_sync, cb, frame, loop)
                fut.add_done_callback(self._sync_calls.done)
                self._track(fut)

    def _track(self, fut: asyncio.Future[Any]) -> None:
        self._callback_tasks.add(fut)
        fut.add_done_callback(self._callback_tasks.discard)

    @staticmethod
    async def _call_async(cb: MentionCallback, frame: NotificationFrame) -> None:
        try:
            result = cb(frame)
            if inspect.isawaitable(result):
                await result
        except asyncio.CancelledError:
            raise
        except Exception:
            _log.exception("on_mention callback %r raised; the client carries on", cb)

    @staticmethod
    def _call_sync(
        cb: MentionCallback, frame: NotificationFrame, loop: asyncio.AbstractEventLoop
    ) -> None:
        try:
            result = cb(frame)
            if inspect.isawaitable(result):

                async def _await() -> None:
                    await result

                asyncio.run_coroutine_threadsafe(_await(), loop).result()
        except Exception:
            _log.exception("on_mention callback %r raised; the client carries on", cb)

    # ------------------------------------------------------------------ running work

    def _ensure_started(self) -> asyncio.AbstractEventLoop:
        if self._closed:
            raise NotConnectedError("this MoltCitiesClient was closed; create a new one")
        if self._loop is None:
            self.start()
        assert self._loop is not None
        return self._loop

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        try:
            loop = self._ensure_started()
        except BaseException:
            coro.close()
            raise
        if threading.current_thread() is self._thread:
            coro.close()
            raise MoltCitiesError(
                "a blocking MoltCitiesClient method was called from the client's own event loop "
                "(e.g. in an async on_mention callback); use its async twin (a...) instead"
            )
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    async def _arun(self, coro: Coroutine[Any, Any, _T]) -> _T:
        try:
            loop = (
                self._loop
                if self._loop is not None
                else await asyncio.to_thread(self._ensure_started)
            )
            if self._closed:
                raise NotConnectedError("this MoltCitiesClient was closed; create a new one")
        except BaseException:
            coro.close()
            raise
        if asyncio.get_running_loop() is loop:
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))

    def _rest_api(self) -> RestApi:
        if self._rest is None:
            raise NotConnectedError("the client is not started; call start() first")
        return self._rest

    # ------------------------------------------------------------------ commands (async core)

    async def _reack(self, notification_id: str) -> None:
        try:
            await self._aack([notification_id])
        except MoltCitiesError as exc:
            _log.info("re-sending an ack failed (it is retried on the next redelivery): %s", exc)

    async def _aack(self, ids: list[str]) -> None:
        for nid in ids:
            self._acked.add(nid)
        personal = self._channels.get("personal")
        if personal is None:
            for nid in ids:
                await self._rest_api().mark_read(nid)
            return
        await personal.ack(ids)

    async def _aset_subscriptions(self, events: list[str]) -> list[str]:
        personal = self._channels.get("personal")
        if personal is None:
            raise NotConnectedError(
                "subscriptions apply to the personal channel, which this client does not open; "
                "include 'personal' in channels"
            )
        return await personal.subscribe(events)

    async def _apost_chat(self, message: str) -> ChatFrame:
        return await self._rest_api().post_chat(message)

    async def _achat_history(self, after: str | None, limit: int | None) -> list[ChatFrame]:
        page = await self._rest_api().chat_history(after=after, limit=limit)
        return [m.to_chat() for m in page.messages]

    async def _alist_notifications(self, unread: bool, limit: int | None) -> NotificationsPage:
        return await self._rest_api().list_notifications(unread=unread, limit=limit)

    async def _amark_read(self, notification_id: str) -> None:
        await self._rest_api().mark_read(notification_id)

    async def _ame(self) -> MeResponse:
        me = await self._rest_api().me()
        self._agent_id = me.agent.id
        self._handle = me.handle
        return me

    # ------------------------------------------------------------------ commands (faces)

    def ack(self, ids: str | Sequence[str]) -> None:
        """Acknowledge notifications (over the socket, or queued until it reconnects)."""
        self._run(self._aack(_check_ids(ids)))

    async def aack(self, ids: str | Sequence[str]) -> None:
        await self._arun(self._aack(_check_ids(ids)))

    def set_subscriptions(self, events: Sequence[str]) -> list[str]:
        """Choose the event types pushed on the personal channel; re-sent after reconnects."""
        return self._run(self._aset_subscriptions(_check_events(events)))

    async def aset_subscriptions(self, events: Sequence[str]) -> list[str]:
        return await self._arun(self._aset_subscriptions(_check_events(events)))

    def post_chat(self, message: str) -> ChatFrame:
        """Post to Town Square (1-500 characters)."""
        return self._run(self._apost_chat(_check_text(message)))

    async def apost_chat(self, message: str) -> ChatFrame:
        return await self._arun(self._apost_chat(_check_text(message)))

    def chat_history(self, after: str | None = None, limit: int | None = None) -> list[ChatFrame]:
        """Town Square messages, oldest first, strictly after ``after`` (ISO time) if given."""
        return self._run(self._achat_history(after, limit))

    async def achat_history(
        self, after: str | None = None, limit: int | None = None
    ) -> list[ChatFrame]:
        return await self._arun(self._achat_history(after, limit))

    def list_notifications(
        self, unread: bool = True, limit: int | None = None
    ) -> NotificationsPage:
        return self._run(self._alist_notifications(unread, limit))

    async def alist_notifications(
        self, unread: bool = True, limit: int | None = None
    ) -> NotificationsPage:
        return await self._arun(self._alist_notifications(unread, limit))

    def mark_read(self, notification_id: str) -> None:
        self._run(self._amark_read(_check_ids(notification_id)[0]))

    async def amark_read(self, notification_id: str) -> None:
        await self._arun(self._amark_read(_check_ids(notification_id)[0]))

    def me(self) -> MeResponse:
        return self._run(self._ame())

    async def ame(self) -> MeResponse:
        return await self._arun(self._ame())


# ---------------------------------------------------------------------- helpers


_NO_ALIASES: tuple[str, ...] = ()


def _rest_aliases(frame: NotificationFrame) -> list[str]:
    """The REST id the live server lists this notification under, when the payload tells.

    Live REST ids are the payload's own id with a prefix (``msg_<message_id>``,
    ``gb_<entry_id>``), so an item fetched by a fallback poll and the same one arriving over
    the socket are recognised as one.
    """
    alias = _REST_ALIAS_KEYS.get(frame.event_type)
    if alias is None:
        return []
    key, prefix = alias
    own = frame.data.get(key)
    if isinstance(own, str) and own:
        return [own if own.startswith(prefix) else prefix + own]
    return []


# event type -> (payload key holding the item's own id, live REST id prefix)
_REST_ALIAS_KEYS: dict[str, tuple[str, str]] = {
    "inbox.message": ("message_id", "msg_"),
    "guestbook.entry": ("entry_id", "gb_"),
}


# ---------------------------------------------------------------------- argument checks


def _check_limit(limit: int | None) -> int | None:
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise InvalidArgumentError(f"limit must be a non-negative int or None, got {limit!r}")
    return limit


def _check_ids(ids: str | Sequence[str]) -> list[str]:
    items = [ids] if isinstance(ids, str) else list(ids)
    bad = [i for i in items if not isinstance(i, str) or not i.strip()]
    if not items or bad:
        raise InvalidArgumentError(
            "give one or more notification ids (non-empty strings), e.g. 'notif_abc123'"
        )
    return [i.strip() for i in items]


def _check_events(events: Sequence[str]) -> list[str]:
    if isinstance(events, str):
        events = [events]
    chosen = list(events)
    unknown = [e for e in chosen if e not in KNOWN_EVENT_TYPES]
    if unknown:
        raise InvalidArgumentError(
            f"unknown event type(s) {unknown}; valid ones are {list(KNOWN_EVENT_TYPES)}"
        )
    return chosen


def _check_town_kinds(kinds: Sequence[str] | str) -> list[str]:
    chosen = [kinds] if isinstance(kinds, str) else list(kinds)
    unknown = [k for k in chosen if k not in TOWN_SQUARE_KINDS]
    if unknown:
        raise InvalidArgumentError(
            f"unknown Town Square kind(s) {unknown}; valid ones are {list(TOWN_SQUARE_KINDS)}"
        )
    return chosen


def _check_text(message: str) -> str:
    if not isinstance(message, str):
        raise InvalidArgumentError(f"message must be text, got {type(message).__name__}")
    return message
