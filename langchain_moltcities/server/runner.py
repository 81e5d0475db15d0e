"""``LocalServer``: the local MoltCities in a background thread, with fault switches.

Layout: a fault proxy (``faults.py``) owns the public port and forwards to uvicorn on a
private loopback port. ``stop()``/``start()``/``restart()`` take both down and up again;
the proxy rebinds the same public port, uvicorn gets a fresh private one. State lives in
``ServerState`` and survives restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

import uvicorn

from langchain_moltcities.server.app import Hub, build_app
from langchain_moltcities.server.events import Mode
from langchain_moltcities.server.faults import FaultProxy
from langchain_moltcities.server.state import ServerState

T = TypeVar("T")
_KEY_RE = re.compile(r"mc_[A-Za-z0-9]+")
# Keys of any shape (a keys file may hold anything) in a query string or a Bearer header.
_QUERY_KEY_RE = re.compile(r"(?i)\b((?:token|api_key|key)=)[^&\s'\"]+")
_BEARER_RE = re.compile(r"(?i)(bearer\s+)[^\s'\"]+")
_CLOSE_REASONS = {4000: "Connection timeout", 4003: "New connection opened"}
# Seconds the live server keeps the TCP connection open after its own close frame.
LIVE_CLOSE_HOLD = 10.0


class _RedactKeys(logging.Filter):
    """Uvicorn logs WebSocket URLs with their query string: never let a key through."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _KEY_RE.sub("mc_***", message)
        redacted = _QUERY_KEY_RE.sub(r"\1***", redacted)
        redacted = _BEARER_RE.sub(r"\1***", redacted)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


class _DropSpuriousHandshakeError(logging.Filter):
    """uvicorn's websockets-sansio protocol logs an ERROR after every denial response (it never
    marks a ``websocket.http.response`` as a finished handshake; Kludex/uvicorn PR #3138). Our
    endpoint always accepts or denies, so the record is noise: each 401 or refused 503 would
    otherwise print it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "ASGI callable returned without completing handshake."


def _install_redaction() -> None:
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactKeys) for f in logger.filters):
            logger.addFilter(_RedactKeys())
    error_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _DropSpuriousHandshakeError) for f in error_log.filters):
        error_log.addFilter(_DropSpuriousHandshakeError())


async def _stop_uvicorn(server: uvicorn.Server, sock: socket.socket) -> None:
    """``Server.shutdown()`` without its fixed 0.1 s sleeps, so restarts are quick."""
    for listener in server.servers:
        listener.close()
    sock.close()
    for connection in list(server.server_state.connections):
        connection.shutdown()
    for _ in range(1000):  # up to ~2 s for handlers to see their sockets gone
        if not server.server_state.connections and not server.server_state.tasks:
            break
        await asyncio.sleep(0.002)
    for task in server.server_state.tasks:
        task.cancel()
    for listener in server.servers:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(listener.wait_closed(), 2)


@dataclass(frozen=True)
class AgentInfo:
    """An agent of the local server, with the key to act as it."""

    handle: str
    id: str
    name: str
    api_key: str = field(repr=False)


class LocalServer:
    """The local MoltCities server, running in a background thread with its own loop."""

    def __init__(
        self,
        mode: Mode = "documented",
        agents: Iterable[str] = ("alice", "bob"),
        *,
        idle_timeout: float = 300.0,
        idle_check_interval: float = 60.0,
        host: str = "127.0.0.1",
        port: int = 0,
        chat_rate_limit: tuple[int, float] = (10, 10.0),
        hourly_limits: Mapping[str, int] | None = None,
        displacement_race: float = 0.0,
        max_message_size: int = 1024 * 1024,
        agent_keys: Mapping[str, tuple[str, str]] | None = None,
        close_hold: float | None = None,
    ) -> None:
        """``agent_keys`` maps a handle to a known ``(agent_id, api_key)`` (e.g. a keys file).

        ``close_hold``: seconds the TCP connection stays open after the server's own close
        frame (4003 displacement, 4000 idle, ``disconnect_all``); default 10 s in live mode as
        on the live server, 0 in documented mode. ``hourly_limits`` (live mode) caps each
        agent's posts an hour by kind, ``{"chat": 60, "message": 30, "guestbook": 20}`` being
        the live server's tier 1; none by default. ``displacement_race`` (live mode): for that
        many seconds after a 4003 the new connection gets no pushes (they are queued for the
        next reconnect) and no Town Square broadcasts, as on the live server; 0 (off) by default.
        """
        self.mode: Mode = mode
        if close_hold is None:
            close_hold = LIVE_CLOSE_HOLD if mode == "live" else 0.0
        if close_hold < 0:
            raise ValueError(f"close_hold must be >= 0 seconds, not {close_hold!r}")
        self.close_hold = close_hold
        self.host = host
        self.idle_check_interval = idle_check_interval
        self.max_message_size = max_message_size
        self.state = ServerState(
            mode,
            idle_timeout=idle_timeout,
            chat_rate_limit=chat_rate_limit,
            hourly_limits=dict(hourly_limits or {}),
            displacement_race=displacement_race,
        )
        known = dict(agent_keys or {})
        for handle in [*agents, *(h for h in known if h not in set(agents))]:
            agent_id, key = known.get(handle, (None, None))
            self.state.register_agent(handle, agent_id=agent_id, api_key=key)
        self._port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._hub: Hub | None = None
        self._proxy: FaultProxy | None = None
        self._uvicorn: uvicorn.Server | None = None
        self._socket: socket.socket | None = None
        self._idle_task: asyncio.Task[None] | None = None
        self._refuse_status: int | None = None
        # Held by start/stop and by calls into the loop, so a call never lands on a loop
        # that is being shut down (it would wait forever for an answer).
        self._lifecycle = threading.RLock()

    # ------------------------------------------------------------------ addresses

    @property
    def port(self) -> int:
        """The public port."""
        return self._port

    @property
    def base_url(self) -> str:
        """``http://host:port``: give it to a client as ``base_url``."""
        return f"http://{self.host}:{self._port}"

    @property
    def ws_url(self) -> str:
        """``ws://host:port``."""
        return f"ws://{self.host}:{self._port}"

    @property
    def running(self) -> bool:
        """Whether the server is listening."""
        return self._loop is not None

    @property
    def agents(self) -> dict[str, AgentInfo]:
        """Each agent by handle, with its id and API key."""
        return {
            a.handle: AgentInfo(a.handle, a.id, a.name, a.api_key)
            for a in list(self.state.agents.values())
        }

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> LocalServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> LocalServer:
        """Listen (on the same public port as before, if started before); returns the server,
        so ``srv = LocalServer(...).start()`` works."""
        with self._lifecycle:
            self._start()
        return self

    def _start(self) -> None:
        if self._loop is not None:
            return
        _install_redaction()
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="moltcities-server", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            asyncio.run_coroutine_threadsafe(self._astart(), loop).result(timeout=20)
        except BaseException:
            self._shutdown_loop()
            raise

    async def _astart(self) -> None:
        hub = Hub(self.state)
        hub.refuse_status = self._refuse_status
        self._hub = hub
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(
            build_app(hub),
            ws="websockets-sansio",
            ws_max_size=self.max_message_size,
            ws_ping_interval=None,
            lifespan="off",
            log_config=None,
            access_log=False,
            log_level="warning",
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        # Server.serve() minus its 0.1 s polling main loop, so stop/restart are quick.
        config.load()
        server.lifespan = config.lifespan_class(config)
        await server.startup(sockets=[sock])
        if not server.started:
            raise RuntimeError("the local MoltCities server failed to start (see uvicorn's log)")
        self._uvicorn, self._socket = server, sock
        proxy = FaultProxy(swallow_close_replies=self.mode == "live", close_hold=self.close_hold)
        proxy.upstream_port = sock.getsockname()[1]
        self._proxy = proxy
        self._port = await proxy.start(self.host, self._port)
        self._idle_task = asyncio.create_task(hub.idle_loop(self.idle_check_interval))

    def stop(self) -> None:
        """Stop listening; every connection drops. State is kept."""
        with self._lifecycle:
            self._stop()

    def _stop(self) -> None:
        if self._loop is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._astop(), self._loop).result(timeout=20)
        self._shutdown_loop()

    async def _astop(self) -> None:
        if self._idle_task is not None:
            self._idle_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._idle_task
        if self._proxy is not None:
            await self._proxy.stop()
        if self._uvicorn is not None and self._socket is not None:
            await _stop_uvicorn(self._uvicorn, self._socket)
        self.state.forget_sessions()

    def _shutdown_loop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        self._hub = self._proxy = self._uvicorn = self._socket = None
        if loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=10)
        loop.close()

    def restart(self) -> None:
        """Drop everything and listen again on the same port, keeping state."""
        with self._lifecycle:
            self._stop()
            self._start()

    # ------------------------------------------------------------------ running in the loop

    def _call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the server's loop (state is single-threaded), or here if stopped."""
        if threading.current_thread() is self._thread:
            return fn()

        async def run() -> T:
            return fn()

        with self._lifecycle:
            loop = self._loop
            if loop is None:
                return fn()
            return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout=20)

    def _apply(self, effects: Any) -> None:
        if self._hub is not None:
            self._hub.apply(effects)

    # ------------------------------------------------------------------ app actions

    def register_agent(self, handle: str, *, name: str | None = None) -> AgentInfo:
        """Add an agent at run time; its id and key."""
        agent = self._call(lambda: self.state.register_agent(handle, name=name))
        return AgentInfo(agent.handle, agent.id, agent.name, agent.api_key)

    def notify(self, handle: str, event_type: str, data: Mapping[str, Any] | None = None) -> None:
        """Raise a notification for ``handle`` as the app would."""
        self._call(lambda: self._apply(self.state.notify(handle, event_type, dict(data or {}))))

    def connections(self, handle: str) -> dict[str, int]:
        """Open WebSocket connections of ``handle``, per channel."""
        return self._call(lambda: self.state.connection_counts(handle))

    # ------------------------------------------------------------------ faults

    def disconnect_all(self, code: int = 4000, reason: str | None = None) -> None:
        """Close every WebSocket from the server side with ``code``."""
        why = reason if reason is not None else _CLOSE_REASONS.get(code, "")
        self._call(lambda: self._apply(self.state.disconnect_all(code, why)))

    def drop_all(self) -> None:
        """Reset every TCP connection: no close frame, the peer sees a dead link."""
        self._call(lambda: self._proxy.drop_all() if self._proxy else None)

    def freeze(self) -> None:
        """Stop reading and answering on every socket (half-open), until ``thaw()``."""
        self._call(lambda: self._proxy.freeze() if self._proxy else None)

    def thaw(self) -> None:
        """Answer again after :meth:`freeze`."""
        self._call(lambda: self._proxy.thaw() if self._proxy else None)

    def refuse_handshakes(self, status: int | None = 503) -> None:
        """Refuse new WebSocket handshakes with HTTP ``status``; ``None`` accepts again."""
        self._refuse_status = status

        def set_status() -> None:
            if self._hub is not None:
                self._hub.refuse_status = status

        self._call(set_status)
