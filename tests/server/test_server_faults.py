"""Restart with state kept, stop/start on the same port, and the fault hooks."""

from __future__ import annotations

import asyncio
import time

import pytest
import websockets

from langchain_moltcities.server import LocalServer

from .server_helpers import ApiFor, Connector, eventually, rejected, ws_url


async def test_restart_keeps_state_and_port(
    moltcities_server: LocalServer, connect: Connector, api_for: ApiFor
) -> None:
    srv = moltcities_server
    port = srv.port
    online = await connect(srv, "bob", channel="town-square")
    await online.recv_type("connected")
    await api_for(srv).chat("bob", "before the restart @alice")
    carol = srv.register_agent("dave")
    srv.restart()
    assert srv.port == port
    assert await online.closed() == (1006, "")  # dropped, not closed politely
    ws = await connect(srv, "alice")
    await ws.recv_type("connected")
    mention = await ws.recv()
    assert (mention["event_type"], mention["queued"]) == ("mention", True)
    history = (await api_for(srv).get("/api/chat")).json()
    assert [m["message"] for m in history["messages"]] == ["before the restart @alice"]
    dave = await connect(srv, "dave")
    assert (await dave.recv())["agent_id"] == carol.id
    assert srv.connections("bob")["town-square"] == 0


async def test_stopped_server_refuses_connections_until_started(
    any_moltcities_server: LocalServer, connect: Connector
) -> None:
    srv = any_moltcities_server
    srv.stop()
    with pytest.raises(OSError):
        await websockets.connect(ws_url(srv, "alice"), open_timeout=10)
    srv.notify("alice", "inbox.message", {"while": "down"})  # the app still raises events
    srv.start()
    ws = await connect(srv, "alice")
    await ws.recv_type("connected")
    assert (await ws.recv_type("notification"))["data"] == {"while": "down"}


async def test_drop_all_resets_without_close_frame(
    any_moltcities_server: LocalServer, connect: Connector
) -> None:
    srv = any_moltcities_server
    a = await connect(srv, "alice")
    b = await connect(srv, "bob", channel="town-square")
    await a.recv_type("connected")
    await b.recv_type("connected")
    srv.drop_all()
    assert await a.closed() == (1006, "")
    assert await b.closed() == (1006, "")
    await eventually(lambda: srv.connections("alice")["personal"] == 0)
    again = await connect(srv, "alice")  # still listening
    assert (await again.recv())["type"] == "connected"


async def test_freeze_holds_frames_and_handshakes_until_thaw(
    any_moltcities_server: LocalServer, connect: Connector
) -> None:
    srv = any_moltcities_server
    ws = await connect(srv, "alice")
    await ws.recv_type("connected")
    srv.freeze()
    await ws.send({"type": "ping"})
    with pytest.raises(TimeoutError):
        await ws.recv(wait=0.3)  # half-open: nothing comes back
    with pytest.raises(TimeoutError):
        await websockets.connect(ws_url(srv, "bob"), open_timeout=0.3)
    # The timeouts above pass as well if the answer is merely slow; the pong's own timestamp
    # cannot: the server stamps it when it reads the ping, which a freeze holds until thaw.
    thawed_at = time.time()
    srv.thaw()
    pong = await ws.recv()
    assert pong["type"] == "pong"  # the held ping went through
    assert pong["timestamp"] >= int(thawed_at * 1000), (pong, thawed_at)
    bob = await connect(srv, "bob")
    assert (await bob.recv())["type"] == "connected"


async def test_refused_handshake_status_is_configurable(
    any_moltcities_server: LocalServer,
) -> None:
    srv = any_moltcities_server
    srv.refuse_handshakes(502)
    status, body = await rejected(ws_url(srv, "alice"))
    assert status == 502
    assert b"error" in body
    srv.refuse_handshakes(None)
    conn = await websockets.connect(ws_url(srv, "alice"))
    assert "connected" in str(await asyncio.wait_for(conn.recv(), 10))
    conn.transport.abort()
