"""Town square presence, errors and idle closes; live mode's unanswered close frame."""

from __future__ import annotations

import asyncio

import pytest

from langchain_moltcities.server import LocalServer
from langchain_moltcities.server.pytest_plugin import ServerFactory

from .server_helpers import Connector, eventually

TS = "town-square"
POST_ONLY = "Chat messages must be sent via POST /api/chat"


async def test_presence_joined_to_others_and_left_to_everyone(
    any_moltcities_server: LocalServer, connect: Connector
) -> None:
    srv = any_moltcities_server
    a = await connect(srv, "alice", channel=TS, close_timeout=0.5)
    await a.recv_type("connected")
    b = await connect(srv, "bob", channel=TS, close_timeout=0.5)
    assert (await b.recv())["type"] == "connected"
    assert await b.until_pong() == []  # no joined for oneself
    joined = await a.recv()
    assert joined == {
        "type": "presence",
        "event": "joined",
        "agent": {"id": srv.agents["bob"].id, "handle": "bob"},
        "online_count": 2,
    }
    await b.conn.close()
    left = await a.recv_type("presence")
    assert (left["event"], left["agent"]["handle"], left["online_count"]) == ("left", "bob", 1)


async def test_presence_left_when_the_transport_dies(
    any_moltcities_server: LocalServer, connect: Connector
) -> None:
    srv = any_moltcities_server
    a = await connect(srv, "alice", channel=TS)
    await a.recv_type("connected")
    b = await connect(srv, "bob", channel=TS)
    await b.recv_type("connected")
    await a.recv_type("presence")
    b.conn.transport.abort()
    left = await a.recv_type("presence")
    assert (left["event"], left["online_count"]) == ("left", 1)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('{"type": "chat", "message": "hi"}', POST_ONLY),
        ('{"type": "subscribe", "events": ["chat"]}', POST_ONLY),
        ("}{ bad json", "Invalid JSON"),
    ],
)
async def test_town_square_accepts_only_ping(
    any_moltcities_server: LocalServer, connect: Connector, raw: str, message: str
) -> None:
    ws = await connect(any_moltcities_server, "alice", channel=TS)
    await ws.recv_type("connected")
    await ws.send(raw)
    assert await ws.recv() == {"type": "error", "code": 4009, "message": message}


@pytest.mark.parametrize("mode", ["documented", "live"])
async def test_idle_connections_close_4000_and_others_see_timeout(
    moltcities_server_factory: ServerFactory, connect: Connector, mode: str
) -> None:
    srv = moltcities_server_factory(mode=mode, idle_timeout=0.5, idle_check_interval=0.02)
    idle = await connect(srv, "bob", channel=TS)
    await idle.recv_type("connected")
    watcher = await connect(srv, "alice", channel=TS)
    await watcher.recv_type("connected")
    personal = await connect(srv, "carol")
    await personal.recv_type("connected")
    assert await idle.closed() == (4000, "Connection timeout")
    timeout = await watcher.recv_type("presence")
    assert (timeout["event"], timeout["agent"]["handle"]) == ("timeout", "bob")
    assert await personal.closed() == (4000, "Connection timeout")


async def test_ping_keeps_a_connection_open(
    moltcities_server_factory: ServerFactory, connect: Connector
) -> None:
    srv = moltcities_server_factory(idle_timeout=1.0, idle_check_interval=0.02)
    pinger = await connect(srv, "alice")
    await pinger.recv_type("connected")
    silent = await connect(srv, "bob")
    await silent.recv_type("connected")

    async def keep_pinging() -> None:
        while True:
            await pinger.send({"type": "ping"})
            await asyncio.sleep(0.1)

    task = asyncio.create_task(keep_pinging())
    try:
        assert await silent.closed() == (4000, "Connection timeout")
    finally:
        task.cancel()
    assert srv.connections("alice")["personal"] == 1
    await pinger.send({"type": "ping"})
    assert (await pinger.recv_type("pong"))["type"] == "pong"


async def test_documented_mode_answers_the_client_close(
    moltcities_server: LocalServer, connect: Connector
) -> None:
    ws = await connect(moltcities_server, "alice", close_timeout=5)
    await ws.recv_type("connected")
    await ws.conn.close(1000, "bye")
    assert ws.conn.protocol.close_rcvd is not None
    assert (ws.conn.protocol.close_rcvd.code, ws.conn.close_code) == (1000, 1000)


async def test_live_mode_never_answers_the_client_close(
    moltcities_live_server: LocalServer, connect: Connector
) -> None:
    srv = moltcities_live_server
    ws = await connect(srv, "alice", close_timeout=1)
    await ws.recv_type("connected")
    await ws.conn.close(1000, "going offline")
    assert ws.conn.protocol.close_rcvd is None
    assert ws.conn.close_code == 1006
    # The server did act on the close: the connection is gone there.
    await eventually(lambda: srv.connections("alice")["personal"] == 0)


async def test_server_initiated_close_codes(
    any_moltcities_server: LocalServer, connect: Connector
) -> None:
    srv = any_moltcities_server
    a = await connect(srv, "alice")
    b = await connect(srv, "bob", channel=TS)
    await a.recv_type("connected")
    await b.recv_type("connected")
    srv.disconnect_all(4000)
    assert await a.closed() == (4000, "Connection timeout")
    assert await b.closed() == (4000, "Connection timeout")
    assert srv.connections("alice") == {"personal": 0, "town-square": 0}
