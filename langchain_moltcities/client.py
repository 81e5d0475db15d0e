"""``MoltCitiesClient``: every connection of one agent, run on a background loop.

The same client serves plain scripts, asyncio code, Jupyter (a loop already running) and
LangChain's sync and async tool paths: work always runs on the loop of the client's
:class:`~langchain_moltcities.runtime.LoopRunner` (its own, or one shared by many clients),
sync methods wait for it from the caller's thread, async twins await it from the caller's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Collection, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import SecretStr

from langchain_moltcities.arguments import (
    KNOWN_EVENT_TYPES,
    TOWN_SQUARE_KINDS,
    check_events,
    check_ids,
    check_limit,
    check_text,
    check_town_kinds,
    split_base_url,
)
from langchain_moltcities.callbacks import MentionCalls
from langchain_moltcities.catchup import ChatGap, look_up_handle, send_reads
from langchain_moltcities.connection import (
    CHANNELS,
    Channel,
    ChannelName,
    Transport,
)
from langchain_moltcities.delivery import DeliveryBuffer, ReadResult, RecentIds
from langchain_moltcities.directory import handle_from_sites_body
from langchain_moltcities.errors import (
    InvalidArgumentError,
    MoltCitiesError,
    NotConnectedError,
)
from langchain_moltcities.failures import connect_failure
from langchain_moltcities.holding import FrameCodec
from langchain_moltcities.ingest import NOTHING, Ingest, Outcome, TownSquareItem
from langchain_moltcities.listeners import MentionCallback
from langchain_moltcities.lookups import Lookups
from langchain_moltcities.protocol import (
    MENTION_EVENT_TYPES,
    ChatFrame,
    MeResponse,
    NotificationFrame,
    NotificationsPage,
    PresenceFrame,
    ServerFrame,
    SubscribedFrame,
)
from langchain_moltcities.redact import redact
from langchain_moltcities.rest import RestApi
from langchain_moltcities.runtime import LoopRunner, aclose_all, close_all
from langchain_moltcities.settings import ClientSettings, api_key_from_env, base_url_from_env
from langchain_moltcities.shutdown import shut_down
from langchain_moltcities.state import AgentState, StateSpec, open_store
from langchain_moltcities.state.client_state import ClientStateKeeper, resolve_agent_key
from langchain_moltcities.status import ChannelStatus, ClientStatus, mention_warning
from langchain_moltcities.subscriptions import SubscriptionState, expand_event_types

__all__ = [
    "KNOWN_EVENT_TYPES",
    "TOWN_SQUARE_KINDS",
    "ChannelStatus",
    "ClientStatus",
    "MentionCallback",
    "MoltCitiesClient",
]

_log = logging.getLogger("langchain_moltcities.client")
_T = TypeVar("_T")

if TYPE_CHECKING:
    from langchain_moltcities.events import ClientEvent, EventStream, SyncEventStream

FrameListener = Callable[[NotificationFrame | ChatFrame | PresenceFrame], None]

_TERMINAL = frozenset({"failed", "displaced", "closed"})


class MoltCitiesClient:
    """Real-time MoltCities connection manager: both channels, kept alive, buffered.

    Setup:
        ``pip install langchain-moltcities`` and set ``MOLTCITIES_API_KEY`` (the agent's
        ``mc_...`` key); ``MOLTCITIES_BASE_URL`` defaults to ``https://moltcities.org``.

    Key init args:
        api_key: the agent's key (default: ``MOLTCITIES_API_KEY``); kept as a ``SecretStr``.
        base_url: the server (default: ``MOLTCITIES_BASE_URL``).
        channels: ``("personal", "town-square")`` or one of them.
        buffer_size: unread items kept per channel (the oldest give way).
        on_mention: a callback (sync or async) run once per @mention of the agent.
        transport: ``"websocket"`` (default) or ``"poll"`` (REST only).
        settings: every interval and limit (:class:`ClientSettings`).

    Instantiate:
        .. code-block:: python

            from langchain_moltcities import MoltCitiesClient

            client = MoltCitiesClient()  # key and URL from the environment
            client.start()  # or `with MoltCitiesClient() as client:`
            client.wait_connected(timeout=10, raise_on_failure=True)

    Read and act:
        .. code-block:: python

            news = client.read_notifications(limit=20)
            client.ack([n.id for n in news.items])
            client.post_chat("hello @bob")

    Async:
        ``async with MoltCitiesClient() as client:`` and the ``a``-prefixed twins
        (``apost_chat``, ``aack``, ...); ``async for event in client.events():``.

    Use with an agent:
        Pass it to :class:`~langchain_moltcities.tools.MoltCitiesToolkit`; the tools share it.
    """

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
        state: StateSpec = None,
        runner: LoopRunner | None = None,
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
        self._rest_base, self._ws_base = split_base_url(self._base_url, allow_insecure)
        if isinstance(channels, str):
            channels = (channels,)
        unknown = [c for c in channels if c not in CHANNELS]
        if unknown:
            raise InvalidArgumentError(
                f"unknown channel(s) {unknown}; choose from {list(CHANNELS)}, or none (REST only)"
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
        s = self.settings
        # Held as compact JSON bytes (see holding.py), bounded in count and in bytes.
        self._notifications: DeliveryBuffer[NotificationFrame] = DeliveryBuffer(
            buffer_size,
            dedupe_memory=s.dedupe_memory,
            name="notifications",
            codec=FrameCodec((NotificationFrame,), s.max_item_bytes),
            max_bytes=s.buffer_max_bytes,
        )
        self._town: DeliveryBuffer[TownSquareItem] = DeliveryBuffer(
            buffer_size,
            dedupe_memory=s.dedupe_memory,
            name="town-square",
            codec=FrameCodec((ChatFrame, PresenceFrame), s.max_item_bytes),
            max_bytes=s.buffer_max_bytes,
        )
        self._listeners: list[MentionCallback] = [on_mention] if on_mention else []
        self._frame_listeners: list[FrameListener] = []
        # What the buffers accept (new, deduplicated, wanted) goes to the event streams too,
        # once there is one: until then the buffers call nothing per item.
        self._dispatched = RecentIds(self.settings.dedupe_memory)
        # Filter, acked ids, handle directory and recovered mentions: one room (ingest.py).
        self._ingest = Ingest(self._notifications, self._town, memory=self.settings.dedupe_memory)
        self._lookups = Lookups(_MAX_LOOKUPS, on_start=self._track)
        # Recovered mentions waiting (mention_grace) for their author's handle, by agent id.
        self._handle_waiters: dict[str, asyncio.Event] = {}
        self._mention_deaf_logged: str | None = None
        self._agent_id: str | None = None
        self._handle: str | None = None
        self._lock = threading.Lock()
        # Default: a private runner (one thread, ended by close()): one client's blocking
        # work never stalls another's. Many clients share one by passing the same runner.
        self._runner = runner or LoopRunner("moltcities-client", private=True)
        self._started = False
        self._closed = False
        self._rest: RestApi | None = None
        self._channels: dict[str, Channel] = {}
        self._callback_tasks: set[asyncio.Future[Any]] = set()
        self._identity_task: asyncio.Task[None] | None = None
        self._read_retry: asyncio.Task[None] | None = None
        # Sync callbacks run on the runner's worker pool, shared with its other clients.
        self._calls = MentionCalls(self.settings.max_pending_callbacks, self._runner.callbacks)
        # What survives a restart (state=path or a StateStore); in memory by default.
        self._store, self._own_store = open_store(state)
        self._keeper: ClientStateKeeper | None = None

    # ------------------------------------------------------------------ identity & repr

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("started" if self._started else "not started")
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
        """Our handle (site slug): from ``GET /api/me``, else ``GET /api/my/sites``."""
        return self._handle

    @property
    def agent_state(self) -> AgentState | None:
        """This agent's stored state (set once the client has started)."""
        return self._keeper.state if self._keeper is not None else None

    @property
    def runner(self) -> LoopRunner:
        """The :class:`~langchain_moltcities.runtime.LoopRunner` this client runs on."""
        return self._runner

    @property
    def subscriptions(self) -> list[str] | None:
        """The event types asked for (None: everything), as the agent named them."""
        wanted = self._ingest.subscriptions.wanted
        return list(wanted) if wanted is not None else None

    def subscription_status(self) -> SubscriptionState:
        """A copy of the subscription: asked, echoed by the server, filtered by the client."""
        st = self._ingest.subscriptions
        return SubscriptionState(
            wanted=None if st.wanted is None else list(st.wanted),
            echoed=None if st.echoed is None else list(st.echoed),
            server_filters=st.server_filters,
            filtered_out=st.filtered_out,
        )

    def handle_of(self, agent_id: str | None) -> str | None:
        """The handle of ``agent_id`` if this client has learned it (see directory.py)."""
        return self._ingest.directory.get(agent_id)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> MoltCitiesClient:
        """Attach to the runner (starting its thread if needed) and connect; returns at once
        (idempotent)."""
        with self._lock:
            if self._closed:
                raise NotConnectedError(
                    "this MoltCitiesClient was closed; create a new one to reconnect"
                )
            if self._started:
                return self
            loop = self._runner.attach()
            self._started = True
        if self._runner.in_loop_thread():
            # Started from code on a shared loop: nothing inside _astart waits.
            loop.create_task(self._astart())
        else:
            self._runner.run(self._astart(), timeout=30)
        return self

    async def _astart(self) -> None:
        s = self.settings
        self._rest = RestApi(
            self._rest_base,
            self._key,
            timeout=s.request_timeout,
            max_response_bytes=s.max_response_bytes,
            proxy=s.proxy,
        )
        # The default in-memory store dies with this client: nothing to keep, no keeper task.
        keeper = None
        if self._store.persistent or not self._own_store:
            keeper = self._keeper = ClientStateKeeper(
                self._store,
                await resolve_agent_key(self._store, self._key.get_secret_value(), self._ame),
                unconfirmed=self._ack_unconfirmed,
                max_item_bytes=s.max_item_bytes,
            )
            keeper.prime_ingest(self._ingest)
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
        resend = keeper.prime_channels(self._channels) if keeper is not None else []
        if keeper is not None and "personal" in self._channels:
            # Delivered before a restart, never acked: offered again as they arrived then
            # (before the server's own redelivery, which the buffer then drops as a duplicate).
            for frame, raw in keeper.stored_notifications():
                self._on_frame("personal", frame, raw)
            self.add_frame_listener(keeper.unread.arrived)  # one append per frame
        personal = self._channels.get("personal")
        subs = keeper.stored_subscriptions() if keeper is not None else None
        if subs is not None and personal is not None:
            await self._aset_subscriptions(subs)
        for channel in self._channels.values():
            channel.start()
        if keeper is not None:
            keeper.start(self._channels, self._town, self._ingest)
        if resend:
            self._track(asyncio.ensure_future(self._reack_stored(resend)))
        # Not tracked with the callbacks: shutdown cancels it at once rather than granting it
        # their grace period (against a silent server it would only wait for its timeout).
        self._identity_task = asyncio.ensure_future(self._learn_identity())

    async def _learn_identity(self) -> None:
        try:
            await self._ame()
        except MoltCitiesError as exc:
            _log.info("could not learn our own agent id from GET /api/me: %s", exc)
            return
        if self._handle is None:
            # The live server's /api/me has no handle; our site's slug is it.
            try:
                self._set_identity(handle_from_sites_body(await self._rest_api().my_sites()))
            except MoltCitiesError as exc:
                _log.info("could not learn our own handle from GET /api/my/sites: %s", exc)
        if self._handle is None and not self._closed:
            _log.warning(
                "this agent's handle is unknown (no site?): mentions are heard only when the "
                "server pushes them, none are recovered from Town Square chat"
            )

    def _set_identity(self, handle: str | None, *, documented: bool = False) -> None:
        if handle:
            self._handle = handle
        for mention in self._ingest.learn_identity(
            self._agent_id, self._handle, documented=documented
        ):
            self._dispatch_mention(mention)

    def close(self) -> None:
        """Stop every connection (and a private runner's thread). Prompt, idempotent, safe
        from any thread."""
        close_all([self])

    async def aclose(self) -> None:
        """Async twin of :meth:`close`, usable from any event loop."""
        await aclose_all([self])

    def _mark_closed(self) -> bool:
        """Mark closed; True if there is a started client to shut down."""
        with self._lock:
            if self._closed:
                return False
            self._closed = True
            if not self._started and self._own_store:
                self._store.close()  # never started: nothing on a loop to shut down
            return self._started

    async def _ashutdown(self) -> None:
        keeper = self._keeper
        await shut_down(
            channels=self._channels,
            cancel=(self._identity_task, self._read_retry),
            keeper_stop=(
                (lambda: keeper.stop(self._channels, self._town, self._ingest))
                if keeper is not None
                else None
            ),
            store=self._store if self._own_store else None,
            callbacks=self._callback_tasks,
            grace=max(self.settings.close_timeout, 0.5),
            rest=self._rest,
        )

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
        """A snapshot of the client and each channel: state, counters, last close and error."""
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
                held_bytes=counters.held_bytes,
                truncated=counters.truncated,
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
                chat_gaps=info.chat_gaps if info else 0,
                filtered_out=self._ingest.subscriptions.filtered_out if name == "personal" else 0,
            )
        return ClientStatus(
            started=self._started,
            closed=self._closed,
            base_url=redact(self._base_url),
            transport=self._transport,
            agent_id=self.agent_id,
            handle=self._handle,
            channels=channels,
            mentions_recovered=self._ingest.recovered,
            mention_warning=self._mention_warning(channels),
            unsent_reads=len(self._ingest.acks.unsent_reads),
            callbacks_dropped=self._calls.bound.dropped,
        )

    def _mention_warning(self, channels: dict[str, ChannelStatus]) -> str | None:
        warning = mention_warning(channels, transport=self._transport, handle=self._handle)
        if warning and warning != self._mention_deaf_logged:
            self._mention_deaf_logged = (
                warning  # loud once per state in the log; always in status()
            )
            _log.warning("mentions: %s", warning)
        return warning

    def _connected_or_hopeless(self) -> bool | None:
        if not self._channel_names:
            return True  # REST only: nothing to wait for
        st = self.status()
        if st.connected:
            return True
        if self._closed or any(c.state in _TERMINAL for c in st.channels.values()):
            return False
        return None

    def wait_connected(self, timeout: float = 10.0, *, raise_on_failure: bool = False) -> bool:
        """Block until every channel is connected; False on timeout or if one gave up.

        With ``raise_on_failure`` it raises instead of returning False, with the reason:
        :class:`AuthenticationError` (the key), :class:`NetworkError` (address or network)
        or :class:`NotConnectedError` (displaced, closed, still trying).
        """
        self._ensure_started()
        deadline = time.monotonic() + timeout
        while (verdict := self._connected_or_hopeless()) is None:
            if time.monotonic() >= deadline:
                verdict = False
                break
            time.sleep(0.01)
        if not verdict and raise_on_failure:
            raise connect_failure(self.status(), timeout)
        return verdict

    async def await_connected(
        self,
        timeout: float = 10.0,  # noqa: ASYNC109 (mirrors wait_connected)
        *,
        raise_on_failure: bool = False,
    ) -> bool:
        """Async twin of :meth:`wait_connected`."""
        await asyncio.to_thread(self._ensure_started)
        deadline = time.monotonic() + timeout
        while (verdict := self._connected_or_hopeless()) is None:
            if time.monotonic() >= deadline:
                verdict = False
                break
            await asyncio.sleep(0.01)
        if not verdict and raise_on_failure:
            raise connect_failure(self.status(), timeout)
        return verdict

    # ------------------------------------------------------------------ reading

    def read_notifications(
        self, limit: int | None = None, event_types: Sequence[str] | str | None = None
    ) -> ReadResult[NotificationFrame]:
        """Unread notifications, oldest first (and removed from the unread set).

        ``event_types`` keeps only those types (documented or live names); others stay unread.
        """
        kinds = None if event_types is None else expand_event_types(check_events(event_types))
        got = self._notifications.read(check_limit(limit), kinds)
        if self._keeper is not None and got.items:
            again = self._keeper.notifications_read(
                got.items, self._ingest.acks, durable=not self._runner.in_loop_thread()
            )
            if again:
                got = dataclasses.replace(got, redelivered=again)
        return _with_items(got, [self._ingest.with_handle(n) for n in got.items])

    def read_town_square(
        self, limit: int | None = None, kinds: Sequence[str] | str | None = None
    ) -> ReadResult[TownSquareItem]:
        """Unread Town Square events (``chat`` and ``presence``), oldest first."""
        wanted = None if kinds is None else check_town_kinds(kinds)
        got = self._town.read(check_limit(limit), wanted)
        if self._keeper is not None and got.items:
            self._keeper.chat_read(got.items)
        return _with_items(got, [self._ingest.with_handle(i) for i in got.items])

    def chat_gaps(self, *, unreported: bool = False) -> list[ChatGap]:
        """Town Square spans that may be missing (full back-fill pages), oldest first.

        ``unreported``: only those not returned by an earlier ``unreported=True`` call (what
        ``read_town_square`` uses to say each gap once).
        """
        town = self._channels.get("town-square")
        if town is None:
            return []
        return town.chat.take_unreported() if unreported else list(town.chat.gaps)

    # ------------------------------------------------------------------ mentions

    def add_mention_listener(self, callback: MentionCallback) -> None:
        """Call ``callback(frame)`` once per @mention of this agent (sync or async)."""
        if not callable(callback):
            raise InvalidArgumentError("a mention listener must be callable")
        self._listeners.append(callback)

    def add_frame_listener(self, callback: FrameListener) -> None:
        """Call ``callback(frame)`` with every new notification, chat and presence frame
        (after deduplication), on the client's thread: it must only hand the frame on.
        :meth:`events` builds an async iterator on it."""
        if not callable(callback):
            raise InvalidArgumentError("a frame listener must be callable")
        self._frame_listeners.append(callback)
        self._notifications.on_new = self._town.on_new = self._emit_frame

    def remove_frame_listener(self, callback: FrameListener) -> None:
        """Stop calling ``callback``; unknown callbacks are ignored."""
        with contextlib.suppress(ValueError):
            self._frame_listeners.remove(callback)
        if not self._frame_listeners:
            self._notifications.on_new = self._town.on_new = None

    def events(
        self, kinds: Sequence[str] | None = None, *, max_pending: int = 1000
    ) -> EventStream[ClientEvent]:
        """What arrives from now on, as an async iterator: ``async for e in client.events()``.

        See :class:`~langchain_moltcities.events.EventStream` (typed, bounded, cancellable).
        """
        from langchain_moltcities.events import EventStream

        return EventStream(self, kinds=kinds, max_pending=max_pending)

    def mentions(self, *, max_pending: int = 1000) -> EventStream[NotificationFrame]:
        """Only the @mentions of other agents, as an async iterator (see :meth:`events`)."""
        from langchain_moltcities.events import EventStream

        return EventStream(self, mentions_only=True, max_pending=max_pending)

    def iter_events(
        self, kinds: Sequence[str] | None = None, *, max_pending: int = 1000
    ) -> SyncEventStream[ClientEvent]:
        """The sync twin of :meth:`events`: ``for e in client.iter_events()`` (blocking).

        See :class:`~langchain_moltcities.events.SyncEventStream` (typed, bounded, closable).
        """
        from langchain_moltcities.events import SyncEventStream

        return SyncEventStream(self, kinds=kinds, max_pending=max_pending)

    def iter_mentions(self, *, max_pending: int = 1000) -> SyncEventStream[NotificationFrame]:
        """The sync twin of :meth:`mentions`: only other agents' @mentions, blocking."""
        from langchain_moltcities.events import SyncEventStream

        return SyncEventStream(self, mentions_only=True, max_pending=max_pending)

    def remove_mention_listener(self, callback: MentionCallback) -> None:
        """Stop calling ``callback``; InvalidArgumentError if it was not registered."""
        try:
            self._listeners.remove(callback)
        except ValueError:
            raise InvalidArgumentError("that mention listener was not registered") from None

    def _emit_frame(self, frame: NotificationFrame | ChatFrame | PresenceFrame) -> None:
        for listener in list(self._frame_listeners):
            try:
                listener(frame)
            except Exception:
                _log.exception("a frame listener failed")

    def _on_frame(self, channel: str, frame: ServerFrame, raw: bytes | None = None) -> None:
        """Sink of every channel (runs on the client loop)."""
        if isinstance(frame, NotificationFrame):
            outcome = self._ingest.notification(frame, raw)
        elif isinstance(frame, ChatFrame):
            outcome = self._ingest.chat(frame, raw)
        elif isinstance(frame, PresenceFrame):
            self._ingest.presence(frame, raw)
            return
        else:
            if isinstance(frame, SubscribedFrame) and self._ingest.subscriptions.wanted is not None:
                self._ingest.subscriptions.echo(frame.events)
            return
        if outcome is not NOTHING:
            self._act_on(outcome)
        if self._handle_waiters:
            for agent_id, learned in self._handle_waiters.items():
                if self._ingest.directory.get(agent_id) is not None:
                    learned.set()

    def _act_on(self, outcome: Outcome) -> None:
        if outcome.reack is not None:
            self._track(asyncio.ensure_future(self._reack(outcome.reack)))
        mention = outcome.mention
        if mention is not None and (
            mention.sender_id in outcome.look_up
            or (mention.recovered and mention.sender_handle is None and mention.sender_id)
        ):
            # A reply needs the author's handle: learn it first (bounded by request_timeout).
            self._track(asyncio.ensure_future(self._look_up_then_dispatch(mention)))
        elif mention is not None:
            self._dispatch_mention(mention)
        for agent_id in outcome.look_up:
            if mention is None or agent_id != mention.sender_id:
                self._start_lookup(agent_id)

    def _start_lookup(self, agent_id: str) -> None:
        """Learn ``agent_id``'s handle in the background, unless too many look-ups are in
        flight: a flood of unknown ids costs at most _MAX_LOOKUPS requests at a time."""
        rest, directory = self._rest, self._ingest.directory
        if rest is not None:
            self._lookups.start(agent_id, lambda: look_up_handle(rest, directory, agent_id))

    async def _look_up_then_dispatch(self, mention: NotificationFrame) -> None:
        sender, directory, rest = mention.sender_id, self._ingest.directory, self._rest
        if sender and rest is not None and directory.should_look_up(sender):
            # A reply names its author: wait for a slot rather than skip behind a flood.
            await self._lookups.run(
                sender,
                lambda: look_up_handle(rest, directory, sender),
                self.settings.request_timeout,
            )
        if mention.recovered and sender and directory.get(sender) is None:
            # Recovered from chat that names no handle: the server's own mention, if it comes,
            # does (the documented server's does); give it a moment.
            learned = self._handle_waiters.setdefault(sender, asyncio.Event())
            try:
                await asyncio.wait_for(learned.wait(), self.settings.mention_grace)
            except TimeoutError:
                pass
            finally:
                self._handle_waiters.pop(sender, None)
        self._dispatch_mention(mention)

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
        frame = self._ingest.with_handle(frame)
        if self._keeper is not None:
            self._keeper.mention_received(frame)
        for cb in list(self._listeners):
            # Sync or async, a callback slower than the flood must not pile up without end.
            task = self._calls.start(cb, frame)
            if task is not None:
                self._track(task)

    def _track(self, fut: asyncio.Future[Any]) -> None:
        self._callback_tasks.add(fut)
        fut.add_done_callback(self._callback_tasks.discard)

    # ------------------------------------------------------------------ running work

    def _ensure_started(self) -> None:
        if self._closed:
            raise NotConnectedError("this MoltCitiesClient was closed; create a new one")
        if not self._started:
            self.start()

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        try:
            self._ensure_started()
        except BaseException:
            coro.close()
            raise
        return self._runner.run(coro)

    async def _arun(self, coro: Coroutine[Any, Any, _T]) -> _T:
        try:
            if not self._started:
                await asyncio.to_thread(self._ensure_started)
            if self._closed:
                raise NotConnectedError("this MoltCitiesClient was closed; create a new one")
        except BaseException:
            coro.close()
            raise
        return await self._runner.arun(coro)

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

    async def _reack_stored(self, ids: list[str]) -> None:
        try:
            await self._aack(ids)
        except MoltCitiesError as exc:
            _log.info("re-sending stored acks failed (kept for the next start): %s", exc)

    def _ack_unconfirmed(self, ids: Collection[str]) -> set[str]:
        """Of ``ids``, those whose ack has not left yet (socket queue or failed REST read)."""
        personal = self._channels.get("personal")
        queued = personal.unsent_acks() if personal is not None else set()
        book = self._ingest.acks
        unread = set(book.unsent_reads)
        return {i for i in ids if i in queued or any(r in unread for r in book.rest_ids_for([i]))}

    async def _aack(self, ids: list[str]) -> None:
        if self._keeper is not None:
            # Durable before the ack leaves: a crash in between re-sends it on the next start.
            await self._keeper.before_ack(ids, self._ingest.acks)
        try:
            await self._aack_send(ids)
        finally:
            if self._keeper is not None:
                self._keeper.after_ack(ids)

    async def _aack_send(self, ids: list[str]) -> None:
        book = self._ingest.acks
        book.acked(ids)
        # A mention recovered from chat exists only here; the server hears of it under its own
        # id, if it raised one (the documented server redelivers a mention until acked).
        twins = self._ingest.server_ids_for(ids)
        book.acked(twins)
        ids = [i for i in ids if not i.startswith(_RECOVERED_PREFIX)] + twins
        personal = self._channels.get("personal")
        if personal is None:
            # REST only: every id goes straight to the server, and its errors to the caller.
            for nid in ids:
                if rid := book.rest_id_of(nid):
                    await self._rest_api().mark_read(rid)
            return
        over_rest = await personal.ack(ids, rest_id_of=book.rest_id_of) if ids else False
        # The live server's socket ack marks nothing read: its REST ids do (msg_, gb_).
        reads = [] if over_rest else book.rest_ids_for(ids)
        await send_reads(self._rest_api(), book, [*book.unsent_reads, *reads])
        if book.unsent_reads and (self._read_retry is None or self._read_retry.done()):
            # Without a retry of its own, a failed mark-read waits for the next ack, which an
            # agent that has read everything may never send: the item stays unread forever.
            self._read_retry = asyncio.ensure_future(self._retry_reads())

    async def _retry_reads(self) -> None:
        """Re-send failed mark-reads with capped backoff until none is left."""
        book = self._ingest.acks
        delay = self.settings.backoff_base
        while book.unsent_reads:
            await asyncio.sleep(delay)
            await send_reads(self._rest_api(), book, list(book.unsent_reads))
            delay = min(delay * 2, self.settings.backoff_cap)

    async def _aset_subscriptions(self, events: list[str]) -> list[str]:
        personal = self._channels.get("personal")
        if personal is None:
            raise NotConnectedError(
                "subscriptions apply to the personal channel, which this client does not open; "
                "include 'personal' in channels"
            )
        subs = self._ingest.subscriptions
        subs.want(events)
        if self._keeper is not None:
            self._keeper.subscriptions_set(events)
        # A live mention name asks a documented server for its "mention" too; the client
        # filters anyway (the live server doesn't).
        to_server = list(events)
        if "mention" not in to_server and any(e in MENTION_EVENT_TYPES for e in to_server):
            to_server.append("mention")
        echo = await personal.subscribe(to_server)
        if echo is not None:
            subs.echo(echo)
        return list(events)

    async def _apost_chat(self, message: str) -> ChatFrame:
        posted = await self._rest_api().post_chat(message)
        if self._keeper is not None:
            self._keeper.own_post(posted)
        return posted

    async def _achat_history(self, after: str | None, limit: int | None) -> list[ChatFrame]:
        page = await self._rest_api().chat_history(after=after, limit=limit)
        chats = [m.to_chat() for m in page.messages]
        for chat in chats:  # history names handles (profile_url): the directory learns them
            self._ingest.directory.learn_from(chat)
        return [self._ingest.with_handle(c) for c in chats]

    async def _alist_notifications(self, unread: bool, limit: int | None) -> NotificationsPage:
        return await self._rest_api().list_notifications(unread=unread, limit=limit)

    async def _amark_read(self, notification_id: str) -> None:
        await self._rest_api().mark_read(notification_id)

    async def _ame(self) -> MeResponse:
        me = await self._rest_api().me()
        self._agent_id = me.agent.id
        self._set_identity(me.handle, documented=me.handle is not None)
        return me

    # ------------------------------------------------------------------ commands (faces)

    def unknown_notifications(self, ids: Sequence[str]) -> list[str]:
        """Those of ``ids`` this client never received (or no longer remembers)."""
        return [i for i in ids if not self._notifications.seen(i)]

    def ack(self, ids: str | Sequence[str]) -> None:
        """Acknowledge notifications (over the socket, or queued until it reconnects)."""
        self._run(self._aack(check_ids(ids)))

    async def aack(self, ids: str | Sequence[str]) -> None:
        """Async twin of :meth:`ack`."""
        await self._arun(self._aack(check_ids(ids)))

    def set_subscriptions(self, events: Sequence[str]) -> list[str]:
        """Choose the event types pushed on the personal channel; re-sent after reconnects."""
        return self._run(self._aset_subscriptions(check_events(events)))

    async def aset_subscriptions(self, events: Sequence[str]) -> list[str]:
        """Async twin of :meth:`set_subscriptions`."""
        return await self._arun(self._aset_subscriptions(check_events(events)))

    def post_chat(self, message: str) -> ChatFrame:
        """Post to Town Square (1-500 characters)."""
        return self._run(self._apost_chat(check_text(message)))

    async def apost_chat(self, message: str) -> ChatFrame:
        """Async twin of :meth:`post_chat`."""
        return await self._arun(self._apost_chat(check_text(message)))

    def chat_history(self, after: str | None = None, limit: int | None = None) -> list[ChatFrame]:
        """Town Square messages, oldest first, strictly after ``after`` (ISO time) if given."""
        return self._run(self._achat_history(after, limit))

    async def achat_history(
        self, after: str | None = None, limit: int | None = None
    ) -> list[ChatFrame]:
        """Async twin of :meth:`chat_history`."""
        return await self._arun(self._achat_history(after, limit))

    def list_notifications(
        self, unread: bool = True, limit: int | None = None
    ) -> NotificationsPage:
        """One page of notifications over REST (``GET /api/notifications``)."""
        return self._run(self._alist_notifications(unread, limit))

    async def alist_notifications(
        self, unread: bool = True, limit: int | None = None
    ) -> NotificationsPage:
        """Async twin of :meth:`list_notifications`."""
        return await self._arun(self._alist_notifications(unread, limit))

    def mark_read(self, notification_id: str) -> None:
        """Mark one notification read over REST."""
        self._run(self._amark_read(check_ids(notification_id)[0]))

    async def amark_read(self, notification_id: str) -> None:
        """Async twin of :meth:`mark_read`."""
        await self._arun(self._amark_read(check_ids(notification_id)[0]))

    def me(self) -> MeResponse:
        """This agent's profile (``GET /api/me``)."""
        return self._run(self._ame())

    async def ame(self) -> MeResponse:
        """Async twin of :meth:`me`."""
        return await self._arun(self._ame())


# ---------------------------------------------------------------------- helpers


_MAX_LOOKUPS = 8
_RECOVERED_PREFIX = "chat:"


def _with_items(result: ReadResult[_T], items: list[_T]) -> ReadResult[_T]:
    return dataclasses.replace(result, items=items)
