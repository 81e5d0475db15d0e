"""The API key never leaks (logs at DEBUG, errors, tracebacks, reprs, status), and start/close
cycles leave nothing behind (threads, tasks, sockets, fds)."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import threading
import time
import traceback
from typing import Literal
from urllib.parse import quote

import psutil
import pytest

from langchain_moltcities import ClientSettings, MoltCitiesClient
from langchain_moltcities.errors import (
    AuthenticationError,
    InvalidArgumentError,
    MoltCitiesError,
    RateLimitError,
)
from langchain_moltcities.server import LocalServer
from langchain_moltcities.testing import wait_until

FAST = ClientSettings(
    ping_interval=0.2,
    pong_timeout=3.0,
    backoff_base=0.02,
    backoff_cap=0.2,
    close_timeout=0.2,
    connect_timeout=2.0,
    request_timeout=2.0,
)


class _All(logging.Handler):
    """Formats every record it gets: message with its args, exc_info and stack."""

    def __init__(self) -> None:
        super().__init__(1)
        self.texts: list[str] = []
        self.names: set[str] = set()
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.names.add(record.name)
        self.texts.append(self.format(record))


class _EveryLogger:
    """Every logger at its most verbose and propagating to a root handler, for a test.

    Uvicorn sets its own loggers to WARNING (and ``uvicorn.access`` to not propagate) each
    time a server starts, so :meth:`force` runs again after every (re)start.
    """

    def __init__(self) -> None:
        self.handler = _All()
        self._saved: dict[logging.Logger, tuple[int, bool, bool]] = {}
        self._root_level = logging.root.level

    def __enter__(self) -> _EveryLogger:
        logging.root.addHandler(self.handler)
        self.force()
        return self

    def force(self) -> None:
        logging.root.setLevel(1)
        for logger in list(logging.root.manager.loggerDict.values()):
            if isinstance(logger, logging.Logger):
                self._saved.setdefault(logger, (logger.level, logger.propagate, logger.disabled))
                logger.setLevel(1)
                logger.propagate, logger.disabled = True, False

    def __exit__(self, *exc: object) -> None:
        logging.root.removeHandler(self.handler)
        logging.root.setLevel(self._root_level)
        for logger, (level, propagate, disabled) in self._saved.items():
            logger.setLevel(level)
            logger.propagate, logger.disabled = propagate, disabled


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# A key of the live server's shape, and one of no known shape with characters a URL has to
# escape: redaction must not depend on recognising the key.
ODD_KEY = "Zq9+/=~k" + "5e" * 20


@pytest.mark.parametrize("key_shape", ["mc_", "odd"])
def test_the_key_appears_nowhere_through_a_session_with_errors(key_shape: str) -> None:
    seen: list[str] = []
    kinds: set[type[BaseException]] = set()

    def record(exc: BaseException) -> None:
        kinds.add(type(exc))
        seen.extend([str(exc), repr(exc), "".join(traceback.format_exception(exc))])

    with _EveryLogger() as logs:
        known = {"alice": ("agent_odd_alice", ODD_KEY)} if key_shape == "odd" else None
        with LocalServer(
            agents=("alice", "bob"), chat_rate_limit=(2, 60.0), agent_keys=known
        ) as srv:
            logs.force()
            key = srv.agents["alice"].api_key
            assert key.startswith("mc_") == (key_shape == "mc_")
            bad_key = "mc_" + "0" * 64 if key_shape == "mc_" else ODD_KEY[::-1]
            try:  # a bad argument that carries the key
                MoltCitiesClient(api_key=key, base_url=f"ftp://example.org/?token={key}")
            except MoltCitiesError as exc:
                record(exc)
            with MoltCitiesClient(api_key=key, base_url=srv.base_url, settings=FAST) as c:
                assert c.wait_connected(timeout=15)
                srv.notify("alice", "inbox.message", {"preview": "hi"})
                c.post_chat("hello @bob")
                for bad in ("", "x" * 600, "again", "and again"):  # 400s, then 429
                    try:
                        c.post_chat(bad)
                    except MoltCitiesError as exc:
                        record(exc)
                for call in (lambda: c.ack(""), lambda: c.set_subscriptions(["nope"])):
                    try:
                        call()
                    except MoltCitiesError as exc:
                        record(exc)
                srv.stop()  # server down: REST fails, the socket backs off
                try:
                    c.me()
                except MoltCitiesError as exc:
                    record(exc)
                # Wait for the failed reconnects to show: their errors are what to search.
                wait_until(
                    lambda: all(
                        ch.state != "connected" and ch.last_error
                        for ch in c.status().channels.values()
                    ),
                    "both channels to report the server gone",
                )
                status = c.status()
                seen += [repr(c), str(c), repr(vars(c)), repr(c.settings), repr(status)]
                seen += [str(status), status.model_dump_json()]
                srv.start()
                logs.force()
                assert c.wait_connected(timeout=15)
            with MoltCitiesClient(api_key=bad_key, base_url=srv.base_url, settings=FAST) as c:
                assert c.wait_connected(timeout=15) is False
                try:
                    c.me()
                except MoltCitiesError as exc:
                    record(exc)
                seen += [repr(c), repr(vars(c)), repr(c.status()), c.status().model_dump_json()]

    # The error paths really ran, and the loggers of every layer really spoke.
    assert {AuthenticationError, RateLimitError, InvalidArgumentError} <= kinds, kinds
    assert any("429" in s or "rate limit" in s for s in seen)
    assert {"langchain_moltcities.connection", "websockets.client", "httpx"} <= logs.handler.names
    assert any(n.startswith("uvicorn") for n in logs.handler.names), logs.handler.names
    for text in [*logs.handler.texts, *seen]:
        for secret in (key, bad_key):
            assert secret not in text and quote(secret) not in text, text[:500]


def test_the_key_appears_in_no_tool_output_or_error() -> None:
    from langchain_moltcities.tools import MoltCitiesToolkit

    outputs: list[str] = []
    with _EveryLogger() as logs:
        with LocalServer(agents=("alice", "bob"), chat_rate_limit=(1, 60.0)) as srv:
            logs.force()
            key = srv.agents["alice"].api_key
            with MoltCitiesClient(api_key=key, base_url=srv.base_url, settings=FAST) as c:
                assert c.wait_connected(timeout=15)
                srv.notify("alice", "inbox.message", {"preview": f"echo {key[:10]}"})
                tools = {t.name: t for t in MoltCitiesToolkit(client=c).get_tools()}
                calls = [
                    ("post_chat", {"message": "first"}),
                    ("post_chat", {"message": "second, rate limited"}),
                    ("post_chat", {"message": f"leak {key}"}),
                    ("post_chat", {"message": key.upper()}),
                    ("check_notifications", {"event_types": ["nope"]}),
                    ("check_notifications", {}),
                    ("read_town_square", {"limit": "many"}),
                    ("ack_notification", {"notification_id": ""}),
                    ("set_subscriptions", {"events": ["mention"]}),
                ]
                for name, args in calls:
                    msg = tools[name].invoke(
                        {"name": name, "args": args, "id": "1", "type": "tool_call"}
                    )
                    outputs += [str(msg.content), repr(msg.artifact), repr(tools[name])]
                srv.stop()
                for name in ("post_chat", "check_notifications"):
                    args = {"message": "while down"} if name == "post_chat" else {}
                    msg = tools[name].invoke(
                        {"name": name, "args": args, "id": "2", "type": "tool_call"}
                    )
                    outputs.append(str(msg.content))
    assert any("post again in" in o for o in outputs)  # the error paths really ran
    assert any("Refused" in o for o in outputs)
    assert logs.handler.texts
    for text in [*outputs, *logs.handler.texts]:
        assert key not in text and key.upper() not in text, text[:500]


def _leftovers(proc: psutil.Process) -> tuple[int, int, int]:
    return proc.num_threads(), proc.num_fds(), len(proc.net_connections(kind="inet"))


@pytest.mark.slow
def test_start_close_cycles_leave_nothing_behind() -> None:
    proc = psutil.Process()
    with LocalServer(agents=("alice",)) as srv, LocalServer(agents=("alice",)) as silent_srv:
        key, up = srv.agents["alice"].api_key, srv.base_url
        down = f"http://127.0.0.1:{_free_port()}"
        # Accepts TCP but never answers: every close comes in the middle of a handshake.
        silent = silent_srv.base_url

        def sync_cycle(url: str) -> None:
            with MoltCitiesClient(api_key=key, base_url=url, settings=FAST) as c:
                if url == up:
                    assert c.wait_connected(timeout=15)

        async def async_cycle(url: str) -> None:
            async with MoltCitiesClient(api_key=key, base_url=url, settings=FAST) as c:
                if url == up:
                    assert await c.await_connected(timeout=15)
            # Nothing of the client's left running on the caller's loop.
            assert asyncio.all_tasks() == {asyncio.current_task()}

        sync_cycle(up)  # warm-up: imports, the server's own threads and sockets
        silent_srv.freeze()
        gc.collect()
        before = _leftovers(proc)
        tasks_before = len(asyncio.all_tasks(srv._loop)) if srv._loop else 0
        urls = (up, down, silent)
        for i in range(102):
            url = urls[i % 3]
            if (i // 3) % 2 == 0:
                sync_cycle(url)
            else:
                asyncio.run(async_cycle(url))
        # The frozen proxy holds the sockets the client closed until it reads again.
        silent_srv.thaw()

        def grown() -> bool:
            return any(now > then for now, then in zip(_leftovers(proc), before, strict=True))

        deadline = time.monotonic() + 15
        while grown() and time.monotonic() < deadline:
            gc.collect()
            time.sleep(0.05)  # the server side notices closed sockets a moment later
        threads, fds, conns = _leftovers(proc)
        assert threads <= before[0], [t.name for t in threading.enumerate()]
        assert fds <= before[1]
        assert conns <= before[2]
        assert not [t for t in threading.enumerate() if t.name.startswith("moltcities-client")]
        assert srv.connections("alice") == {"personal": 0, "town-square": 0}
        assert silent_srv.connections("alice") == {"personal": 0, "town-square": 0}
        assert (len(asyncio.all_tasks(srv._loop)) if srv._loop else 0) <= tasks_before


@pytest.mark.parametrize("how", ["sync", "async"])
@pytest.mark.parametrize("silence", ["live server ignores the close", "frozen server"])
def test_close_is_prompt_when_the_server_never_answers_a_close(how: str, silence: str) -> None:
    mode: Literal["documented", "live"] = "live" if silence.startswith("live") else "documented"
    with LocalServer(mode=mode, agents=("alice",)) as srv:
        slow = FAST.model_copy(update={"close_timeout": 10.0, "pong_timeout": 30.0})
        c = MoltCitiesClient(
            api_key=srv.agents["alice"].api_key, base_url=srv.base_url, settings=slow
        )
        c.start()
        assert c.wait_connected(timeout=15)
        if mode == "documented":
            srv.freeze()  # half-open: nothing the client sends is read or answered
        started = time.monotonic()
        if how == "sync":
            c.close()
        else:
            asyncio.run(c.aclose())
        # Correctness bound, not a benchmark: waiting out 10 s per channel would blow it.
        assert time.monotonic() - started < 5.0
        assert c.status().closed
        assert not [t for t in threading.enumerate() if t.name.startswith("moltcities-client")]
        srv.thaw()
