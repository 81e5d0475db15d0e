"""One channel's connection: connect, heartbeat, receive, reconnect, or poll instead.

Thin I/O on the client's loop: it asks :mod:`backoff` what a close or failure means, hands
every frame to the client's sink (which feeds :mod:`delivery`), and never decides "seen once".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

from pydantic import SecretStr
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
)

from langchain_moltcities.backoff import (
    CLOSE_ABNORMAL,
    Action,
    Backoff,
    Decision,
    decide_close,
    decide_handshake_status,
    decide_network_error,
)
from langchain_moltcities.catchup import ChatCatchUp, poll_notifications
from langchain_moltcities.closing import ClosingConnection, begin_closing
from langchain_moltcities.errors import AuthenticationError, MoltCitiesError, RateLimitError
from langchain_moltcities.protocol import (
    AckFrame,
    ChatFrame,
    ConnectedFrame,
    ErrorFrame,
    InvalidFrame,
    NotificationFrame,
    PingFrame,
    PongFrame,
    PresenceFrame,
    ServerFrame,
    SubscribedFrame,
    SubscribeFrame,
    UnknownFrame,
    encode_client_frame,
    parse_frame,
)
from langchain_moltcities.redact import RedactingLogger, redact
from langchain_moltcities.rest import RestApi
from langchain_moltcities.settings import ClientSettings
from langchain_moltcities.tls import ws_ssl_context
from langchain_moltcities.wire import DirectConnection

__all__ = ["CHANNELS", "Channel", "ChannelInfo", "ChannelName", "FrameSink", "Transport"]

ChannelName = Literal["personal", "town-square"]
Transport = Literal["websocket", "poll"]
CHANNELS: tuple[ChannelName, ...] = ("personal", "town-square")
# (channel name, frame, the frame's bytes as received or None when it came another way)
FrameSink = Callable[[str, ServerFrame, bytes | None], None]

_log = logging.getLogger("langchain_moltcities.connection")
_MESSAGE_TOO_BIG = 1009
# The live server keeps at most this many notifications for an offline agent (oldest dropped).
LIVE_OFFLINE_QUEUE_LIMIT = 100
# A channel in one of these states will not reconnect, so queued acks would never leave.
_STOPPED_STATES = frozenset({"displaced", "failed", "closed"})


@dataclass
class ChannelInfo:
    """Live state of one channel; written on the client loop, read (as a snapshot) anywhere."""

    name: str
    transport: str
    state: str = "idle"
    connect_count: int = 0
    last_close_code: int | None = None
    last_close_reason: str | None = None
    last_error: str | None = None
    agent_id: str | None = None
    online_count: int | None = None
    unknown_frames: int = 0
    invalid_frames: int = 0
    oversized_frames: int = 0
    polling: bool = False
    backfilled: int = 0
    backfill_pending: bool = False  # a gap in Town Square not yet filled (back-fill retrying)
    retry_attempt: int = 0  # consecutive reconnects without a stable connection
    pings_sent: int = 0
    pongs_received: int = 0
    # Connects whose back-log hit the live server's offline-queue limit: older notifications
    # raised while we were away may have been dropped by the server.
    offline_queue_full: int = 0
    # Connections that ended without a close frame (dropped, or declared half-open): the live
    # server pushes at most once, so what it wrote into such a link may be lost.
    links_lost: int = 0
    # Full back-fill pages: Town Square spans that may be missing (see catchup.py).
    chat_gaps: int = 0


_BAD_FRAMES_LOGGED = 5


def _clip(text: str, limit: int = 200) -> str:
    """One readable line of at most ``limit`` characters."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


class Channel:
    """Keeps one channel (``personal`` or ``town-square``) delivering until stopped."""

    def __init__(
        self,
        name: ChannelName,
        *,
        ws_base: str,
        api_key: SecretStr,
        rest: RestApi,
        settings: ClientSettings,
        sink: FrameSink,
        transport: Transport = "websocket",
        fallback_after: int = 3,
    ) -> None:
        self.name = name
        self.info = ChannelInfo(name=name, transport=transport)
        self._ws_base = ws_base.rstrip("/")
        self._key = api_key
        self._rest = rest
        self._settings = settings
        self._sink = sink
        self._transport = transport
        self._fallback_after = fallback_after
        self._backoff = Backoff(
            settings.backoff_base,
            settings.backoff_cap,
            jitter=settings.backoff_jitter,
            stable_after=settings.stable_after,
        )
        # REST retries (back-fill, polling) back off on their own, apart from reconnects.
        self._rest_backoff = Backoff(
            settings.backoff_base,
            settings.backoff_cap,
            jitter=settings.backoff_jitter,
            stable_after=settings.stable_after,
        )
        self._ws_logger = RedactingLogger(
            logging.getLogger("websockets.client"), [api_key.get_secret_value()]
        )
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._closing: asyncio.Future[None] | None = None
        self._failures = 0  # consecutive failed connect attempts
        self._next_poll_at = -float("inf")
        self._pending_acks: dict[str, None] = {}
        self._desired_subscriptions: list[str] | None = None
        self.subscriptions: list[str] | None = None
        self._sub_waiters: list[asyncio.Future[list[str]]] = []
        # Town Square cursor, back-fill and gap reports live in their own room.
        self.chat = ChatCatchUp(
            rest, limit=settings.backfill_limit, deliver=self._deliver_chat, name=name
        )
        self._last_data = 0.0
        self._ping_outstanding_since: float | None = None
        self._dead_reason: str | None = None
        self._logged_unknown: set[str] = set()
        self._bad_logged = 0
        self._backlog: int | None = None  # queued frames since connect (None: back-log over)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the channel's task on the running loop (idempotent)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"moltcities-{self.name}")

    async def stop(self) -> None:
        """Stop promptly: cancel the loop, then close the socket (bounded by close_timeout)."""
        self.begin_close()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._closing is not None:
            await asyncio.shield(self._closing)
        for fut in self._sub_waiters:
            fut.cancel()
        self._sub_waiters.clear()
        if self.info.state not in ("displaced", "failed"):
            self.info.state = "closed"

    def begin_close(self) -> None:
        """Stop reconnecting and send the close frame now; :meth:`stop` finishes the job.

        The close frame goes out first so that its wait for a reply (which the live server
        never sends) overlaps the rest of the shutdown, and, with many clients closing at
        once, everyone else's too.
        """
        self._stopping = True
        if self._closing is None and self._ws is not None:
            # Bounded by closing.CLOSE_REPLY_WAIT: the live server never answers it.
            self._closing = begin_closing(self._ws, self._settings.close_timeout)

    @property
    def connected(self) -> bool:
        """Whether the channel is connected now."""
        return self.info.state == "connected"

    # ------------------------------------------------------------------ commands

    async def ack(
        self, ids: Sequence[str], *, rest_id_of: Callable[[str], str | None] = lambda i: i
    ) -> bool:
        """Ack over the socket, or by REST when polling or stopped; else queue until reconnect.

        ``rest_id_of`` maps an id to the REST id that marks it read (None: REST can't).
        Returns True when the acks went over REST.
        """
        if self._transport == "poll" or (
            self._ws is None and (self.info.polling or self.info.state in _STOPPED_STATES)
        ):
            for i, nid in enumerate(ids):
                rid = rest_id_of(nid)
                if rid is None:
                    continue
                try:
                    await self._rest.mark_read(rid)
                except MoltCitiesError:
                    if self._transport == "poll" or self.info.state in _STOPPED_STATES:
                        raise
                    # Polling while the socket is down: the socket takes the rest later.
                    for later in ids[i:]:
                        self._pending_acks[later] = None
                    return False
            return True
        ws = self._ws
        for nid in ids:
            self._pending_acks[nid] = None
        if ws is not None:
            await self._flush_acks(ws)
        return False

    async def _flush_acks(self, ws: ClientConnection) -> None:
        for nid in list(self._pending_acks):
            try:
                await ws.send(encode_client_frame(AckFrame(notification_id=nid)))
            except ConnectionClosed:
                return  # stays queued for the next connection
            self._pending_acks.pop(nid, None)

    @property
    def pending_acks(self) -> int:
        """Acks waiting to be sent once the link is back."""
        return len(self._pending_acks)

    def unsent_acks(self) -> set[str]:
        """Ids queued for the socket (sent when it reconnects)."""
        return set(self._pending_acks)

    async def subscribe(self, events: Sequence[str]) -> list[str] | None:
        """Set the subscription (re-sent after every reconnect); the server's echo, or None
        when none came (not connected, polling, or no answer in ``request_timeout``)."""
        self._desired_subscriptions = list(events)
        ws = self._ws
        if ws is None or self._transport == "poll":
            return None
        fut: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        self._sub_waiters.append(fut)
        try:
            await ws.send(encode_client_frame(SubscribeFrame(events=list(events))))
            return await asyncio.wait_for(fut, self._settings.request_timeout)
        except (TimeoutError, ConnectionClosed):
            # No echo (or the link dropped): the wish is kept and re-sent on reconnect.
            return None
        finally:
            if fut in self._sub_waiters:
                self._sub_waiters.remove(fut)

    # ------------------------------------------------------------------ main loop

    async def _run(self) -> None:
        try:
            if self._transport == "poll":
                await self._poll_forever()
            else:
                await self._websocket_forever()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must not pass silently, nor leak the key
            self.info.state = "failed"
            self.info.last_error = self._redact(f"{type(exc).__name__}: {exc}")
            _log.error(
                "%s channel stopped by an unexpected error: %s", self.name, self.info.last_error
            )

    async def _websocket_forever(self) -> None:
        while not self._stopping:
            decision = await self._connect_once()
            if self._stopping:
                return
            if decision.action is not Action.RECONNECT:
                self.info.state = decision.state
                if decision.state != "closed":
                    self.info.last_error = decision.reason
                log = _log.error if decision.action is Action.FATAL else _log.warning
                log("%s channel stopped: %s", self.name, decision.reason)
                return
            self.info.state = "backing_off"
            delay = self._backoff.next_delay()
            self.info.retry_attempt = self._backoff.attempts
            _log.info("%s channel: %s; reconnecting in %.2f s", self.name, decision.reason, delay)
            await self._wait_backoff(delay)

    async def _wait_backoff(self, delay: float) -> None:
        deadline = time.monotonic() + delay
        # Town Square chat is polled from the first failure: the live server's back-fill gives
        # only the newest page, so a long outage would otherwise end in a gap.
        chat_poll = self.name == "town-square" and self.chat.started
        while True:
            if self._failures >= self._fallback_after:
                self.info.polling = True
            if (self.info.polling or chat_poll) and time.monotonic() >= self._next_poll_at:
                await self._poll_once()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            polls = self.info.polling or chat_poll
            step = min(remaining, self._settings.poll_interval) if polls else remaining
            await asyncio.sleep(step)

    def _url(self) -> str:
        url = f"{self._ws_base}{self._settings.ws_path}?token={quote(self._key.get_secret_value())}"
        if self.name == "town-square":
            url += "&channel=town-square"
        return url

    async def _connect_once(self) -> Decision:
        self.info.state = "connecting"
        s = self._settings
        url = self._url()
        try:
            ws = await connect(
                url,
                # One shared context: websockets would build one (~1 MB) per connection.
                ssl=ws_ssl_context() if url.startswith("wss:") else None,
                logger=self._ws_logger,
                open_timeout=s.connect_timeout,
                # Protocol-level pings catch a dead TCP link; app-level pings (below) keep the
                # server's idle timer happy and catch a server that stopped answering.
                ping_interval=s.ping_interval,
                ping_timeout=s.pong_timeout,
                close_timeout=s.close_timeout,
                max_size=s.max_frame_size,
                user_agent_header="langchain-moltcities",
                # Only the proxy asked for (the same rule as REST), never one from the environment.
                proxy=s.proxy,
                create_connection=ClosingConnection,  # a wire.DirectConnection
            )
        except InvalidStatus as exc:
            self._failures += 1
            decision = decide_handshake_status(exc.response.status_code)
            self.info.last_error = decision.reason
            return decision
        except InvalidURI:
            self._failures += 1
            self.info.last_error = "the WebSocket URL is invalid; check base_url"
            return Decision(Action.FATAL, "failed", self.info.last_error)
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            self._failures += 1
            what = self._redact(str(exc) or type(exc).__name__)
            decision = decide_network_error(f"{type(exc).__name__}: {what}")
            self.info.last_error = decision.reason
            return decision

        self._failures = 0
        self._ws = ws
        self.info.polling = False
        self.info.connect_count += 1
        self.info.state = "connected"
        self._backoff.connected(time.monotonic())
        _log.info("%s channel connected (connection #%d)", self.name, self.info.connect_count)
        try:
            backfill_retry_in = await self._after_connect(ws)
            assert isinstance(ws, DirectConnection)  # what create_connection makes
            return await self._session(ws, backfill_retry_in)
        finally:
            self._ws = None
            self._backoff.disconnected(time.monotonic())
            if self.info.state == "connected":
                self.info.state = "backing_off"
            if not self._stopping:
                ws.transport.abort()

    async def _after_connect(self, ws: ClientConnection) -> float | None:
        """Re-send subscriptions and queued acks, back-fill chat; None or seconds to a retry."""
        try:
            if self._desired_subscriptions is not None and self.name == "personal":
                frame = SubscribeFrame(events=self._desired_subscriptions)
                await ws.send(encode_client_frame(frame))
            if self.name == "personal":
                await self._flush_acks(ws)
        except ConnectionClosed:
            return None
        if self.name == "town-square":
            if not self.chat.started:
                self.chat.start_now()
            else:
                # Before reading live frames, so the missed chat comes first, in order.
                return await self._backfill_chat()
        return None

    async def _session(self, ws: DirectConnection, backfill_retry_in: float | None) -> Decision:
        self._last_data = time.monotonic()
        self._ping_outstanding_since = None
        self._dead_reason = None
        self._backlog = 0
        heartbeat = asyncio.create_task(self._heartbeat(ws), name=f"moltcities-{self.name}-ping")
        helpers = [heartbeat]
        if backfill_retry_in is not None:
            helpers.append(
                asyncio.create_task(
                    self._backfill_until_caught_up(backfill_retry_in),
                    name=f"moltcities-{self.name}-backfill",
                )
            )
        # Runs per message, inside the read that unframed it (see wire.py): callables bound
        # to locals, and a live notification (the bulk of any busy channel) goes straight to
        # the sink.
        handle, clock, sink, name = self._handle, time.monotonic, self._sink, self.name

        def on_message(raw: bytes) -> None:
            self._last_data = clock()
            # Raw bytes: parse_frame checks UTF-8 itself while reading the JSON.
            frame = parse_frame(raw)
            if type(frame) is NotificationFrame and self._backlog is None:
                try:
                    sink(name, frame, raw)
                except Exception:
                    _log.exception("%s channel: delivering a frame failed", name)
            else:
                handle(frame, raw)

        try:
            ws.attach(on_message)
            await ws.wait_closed()
        finally:
            ws.detach()
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
        sent = ws.protocol.close_sent
        oversize = sent is not None and sent.code == _MESSAGE_TOO_BIG
        if sent is not None and "keepalive" in sent.reason and not self._dead_reason:
            # websockets' own ping went unanswered: the same half-open verdict as ours.
            self._dead_reason = (
                f"no answer to a WebSocket ping within {self._settings.pong_timeout:g} s "
                "(half-open link)"
            )
        code = ws.close_code
        reason = ws.close_reason or ""
        self.info.last_close_code = code
        self.info.last_close_reason = reason or None
        if oversize:
            self._backoff.unstable()
            self.info.oversized_frames += 1
            self.info.last_error = (
                f"refused an inbound frame over max_frame_size ({self._settings.max_frame_size} "
                "bytes); reconnecting"
            )
            _log.warning("%s channel: %s", self.name, self.info.last_error)
        if self._dead_reason or code is None or code == CLOSE_ABNORMAL:
            self.info.links_lost += 1
        if self._dead_reason:
            self.info.last_error = self._dead_reason
            return decide_network_error(self._dead_reason)
        return decide_close(code, reason)

    async def _heartbeat(self, ws: ClientConnection) -> None:
        s = self._settings
        data_timeout = s.effective_data_timeout
        tick = max(0.01, min(s.ping_interval, s.pong_timeout, data_timeout) / 4)
        last_ping = time.monotonic()
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            if self._ping_outstanding_since is not None:
                if now - self._ping_outstanding_since > s.pong_timeout:
                    self._declare_dead(ws, f"no pong within {s.pong_timeout:g} s (half-open link)")
                    return
            if now - self._last_data > data_timeout:
                self._declare_dead(ws, f"no data for {data_timeout:g} s (half-open link)")
                return
            if now - last_ping >= s.ping_interval:
                last_ping = now
                if self._ping_outstanding_since is None:
                    self._ping_outstanding_since = now
                try:
                    await asyncio.wait_for(
                        ws.send(encode_client_frame(PingFrame())), s.pong_timeout
                    )
                    self.info.pings_sent += 1
                except TimeoutError:
                    self._declare_dead(ws, "could not send a ping (write blocked)")
                    return
                except ConnectionClosed:
                    return

    def _declare_dead(self, ws: ClientConnection, reason: str) -> None:
        self._dead_reason = reason
        _log.warning("%s channel: %s; dropping it and reconnecting", self.name, reason)
        # No close handshake: the peer isn't answering, so waiting for it would only stall.
        ws.transport.abort()

    # ------------------------------------------------------------------ frames

    def _handle(self, frame: ServerFrame, raw: bytes | None = None) -> None:
        if type(frame) is NotificationFrame:
            # Nearly every frame is one: straight to the sink, ahead of the rarer kinds.
            self._count_backlog(frame)
            self._deliver(frame, raw)
        elif isinstance(frame, PongFrame):
            self._ping_outstanding_since = None
            self.info.pongs_received += 1
        elif isinstance(frame, ConnectedFrame):
            if frame.agent_id:
                self.info.agent_id = frame.agent_id
            if frame.online_count is not None:
                self.info.online_count = frame.online_count
            if self.name == "town-square":
                self.chat.server_time(frame.server_time)
        elif isinstance(frame, SubscribedFrame):
            self.subscriptions = list(frame.events)
            for fut in self._sub_waiters:
                if not fut.done():
                    fut.set_result(list(frame.events))
            self._sub_waiters.clear()
            self._deliver(frame)  # the client keeps the echo with the subscription
        elif isinstance(frame, ErrorFrame):
            self.info.last_error = f"server error {frame.code}: {frame.message}"
            _log.warning("%s channel: %s", self.name, self.info.last_error)
        elif isinstance(frame, InvalidFrame):
            self.info.invalid_frames += 1
            self._log_bad(f"ignored a malformed frame: {_clip(frame.error)}")
        elif isinstance(frame, UnknownFrame):
            self.info.unknown_frames += 1
            kind = _clip(frame.type or "<no type>", 60)
            if kind not in self._logged_unknown:
                if len(self._logged_unknown) < 100:  # bounded: types are the peer's choice
                    self._logged_unknown.add(kind)
                self._log_bad(f"ignoring frames of unknown type {kind!r}")
        else:
            if isinstance(frame, PresenceFrame) and frame.online_count is not None:
                self.info.online_count = frame.online_count
            if isinstance(frame, NotificationFrame):  # a subclass: the fast path took the rest
                self._count_backlog(frame)
            if isinstance(frame, ChatFrame) and not self.info.backfill_pending:
                # While a gap is still being back-filled the cursor must stay at its start.
                self.chat.advance(frame)
            self._deliver(frame, raw)

    def _log_bad(self, what: str) -> None:
        """Log the first few bad frames readably, then only count them (no log flood)."""
        self._bad_logged += 1
        if self._bad_logged <= _BAD_FRAMES_LOGGED:
            _log.warning("%s channel: %s", self.name, what)
            if self._bad_logged == _BAD_FRAMES_LOGGED:
                _log.warning(
                    "%s channel: further malformed or unknown frames are only counted "
                    "(status().channels[...].invalid_frames / unknown_frames) and logged at DEBUG",
                    self.name,
                )
        else:
            _log.debug("%s channel: %s", self.name, what)

    def _count_backlog(self, frame: NotificationFrame) -> None:
        if self._backlog is None:
            return
        if not frame.queued:
            self._backlog = None
            return
        self._backlog += 1
        # Live-dialect frames carry agent_id; a documented server keeps everything until acked.
        if self._backlog == LIVE_OFFLINE_QUEUE_LIMIT and frame.agent_id is not None:
            self.info.offline_queue_full += 1
            _log.warning(
                "%s channel: the server's offline queue was full (%d notifications); older ones "
                "raised while disconnected may have been dropped by the server (check "
                "list_notifications() for messages, guestbook entries and jobs)",
                self.name,
                LIVE_OFFLINE_QUEUE_LIMIT,
            )

    def _deliver(self, frame: ServerFrame, raw: bytes | None = None) -> None:
        try:
            self._sink(self.name, frame, raw)
        except Exception:
            _log.exception("%s channel: delivering a frame failed", self.name)

    def _deliver_chat(self, frame: ChatFrame) -> None:
        self._deliver(frame)

    # ------------------------------------------------------------------ REST paths

    async def _backfill_chat(self) -> float | None:
        """Fetch chat posted after the cursor (exclusive); the buffer dedupes by id.

        Returns None once caught up, else the seconds to wait before trying again: the gap
        stays marked (``backfill_pending``) and the cursor stays put until it is filled.
        """
        self.info.backfill_pending = True
        try:
            await self.chat.backfill()
        except AuthenticationError:
            raise
        except MoltCitiesError as exc:
            wait = self._rest_retry_delay(exc)
            self.info.last_error = f"chat back-fill failed: {exc}"
            _log.warning(
                "%s channel: %s; retrying in %.2f s", self.name, self.info.last_error, wait
            )
            return wait
        finally:
            self.info.backfilled = self.chat.backfilled
            self.info.chat_gaps = self.chat.gaps_found
        self.info.backfill_pending = False
        self._rest_backoff.reset()
        return None

    async def _backfill_until_caught_up(self, wait: float) -> None:
        """Retry a failed back-fill in the background while live frames keep flowing."""
        while True:
            await asyncio.sleep(wait)
            try:
                next_wait = await self._backfill_chat()
            except AuthenticationError as exc:
                self.info.last_error = str(exc)
                _log.error("%s channel: chat back-fill stopped: %s", self.name, exc)
                return
            if next_wait is None:
                return
            wait = next_wait

    def _rest_retry_delay(self, exc: MoltCitiesError) -> float:
        """Backoff for a failed REST call; a 429's ``retry_after`` is a floor."""
        delay = self._rest_backoff.next_delay()
        if isinstance(exc, RateLimitError) and exc.retry_after is not None:
            delay = max(delay, exc.retry_after)
        return delay

    async def _poll_once(self) -> float | None:
        """One REST poll of this channel: None if it worked, else seconds to wait."""
        wait: float | None = None
        try:
            if self.name == "personal":
                await poll_notifications(
                    self._rest, self._deliver, skip_unmatchable=self._transport == "websocket"
                )
                self._rest_backoff.reset()
            else:
                wait = await self._backfill_chat()
        except AuthenticationError as exc:
            self.info.last_error = str(exc)
            raise
        except MoltCitiesError as exc:
            wait = self._rest_retry_delay(exc)
            self.info.last_error = f"poll failed: {exc}"
            _log.info("%s channel: %s", self.name, self.info.last_error)
        self._next_poll_at = time.monotonic() + max(self._settings.poll_interval, wait or 0.0)
        return wait

    async def _poll_forever(self) -> None:
        self.info.polling = True
        while not self._stopping:
            if self.info.state != "connected":
                self.info.state = "connecting"
            try:
                wait = await self._poll_once()
            except AuthenticationError as exc:
                self.info.state = "failed"
                _log.error("%s channel stopped: %s", self.name, exc)
                return
            if wait is None:
                if self.info.state != "connected":
                    self.info.connect_count += 1
                self.info.state = "connected"
                await asyncio.sleep(self._settings.poll_interval)
            else:
                self.info.state = "backing_off"
                await asyncio.sleep(wait)

    def _redact(self, text: str) -> str:
        return redact(text, [self._key.get_secret_value()])
