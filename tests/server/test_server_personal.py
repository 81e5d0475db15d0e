"""Personal channel: delivery and redelivery, ack, subscribe, ping, errors, displacement."""

from __future__ import annotations

import pytest

from langchain_moltcities.server import LocalServer

from .server_helpers import ApiFor, Connector, eventually


async def test_documented_queue_redelivers_until_acked(
    moltcities_server: LocalServer, connect: Connector, api_for: ApiFor
) -> None:
    srv = moltcities_server
    message_id = await api_for(srv).message("bob", "alice", "while you were out")
    for _ in range(2):  # not acked: comes again on every connect
        ws = await connect(srv, "alice")
        assert (await ws.recv())["type"] == "connected"
        frame = await ws.recv()
        assert frame["queued"] is True
        assert frame["event_type"] == "inbox.message"
        assert frame["data"]["message_id"] == message_id
        assert await ws.until_pong() == []
        await ws.conn.close()
    ws = await connect(srv, "alice")
    await ws.recv_type("connected")
    await ws.send({"type": "ack", "notification_id": frame["id"]})
    await ws.conn.close()
    ws = await connect(srv, "alice")
    await ws.recv_type("connected")
    assert await ws.until_pong() == []


async def test_documented_live_push_not_acked_is_redelivered_as_queued(
    moltcities_server: LocalServer, connect: Connector, api_for: ApiFor
) -> None:
    srv = moltcities_server
    ws = await connect(srv, "alice")
    await ws.recv_type("connected")
    await api_for(srv).message("bob", "alice", "live one")
    pushed = await ws.recv_type("notification")
    assert pushed["queued"] is False
    assert "agent_id" not in pushed
    await ws.conn.close()
    again = await connect(srv, "alice")
    await again.recv_type("connected")
    redelivered = await again.recv_type("notification")
    assert (redelivered["id"], redelivered["queued"]) == (pushed["id"], True)


async def test_documented_rest_read_counts_as_ack(
    moltcities_server: LocalServer, connect: Connector, api_for: ApiFor
) -> None:
    srv = moltcities_server
    api = api_for(srv)
    await api.message("bob", "alice", "read me over REST")
    listed = (await api.get("/api/notifications", "alice")).json()["notifications"]
    response = await api.post(f"/api/notifications/{listed[0]['id']}/read", "alice")
    assert response.json() == {"marked_read": True, "id": listed[0]["id"]}
    ws = await connect(srv, "alice")
    await ws.recv_type("connected")
    assert await ws.until_pong() == []


async def test_live_offline_queue_is_delivered_once_without_ack(
    moltcities_live_server: LocalServer, connect: Connector, api_for: ApiFor
) -> None:
    srv = moltcities_live_server
    await api_for(srv).message("bob", "alice", "offline")
    ws = await connect(srv, "alice")
    await ws.recv_type("connected")
    frame = await ws.recv()
    assert frame["queued"] is True
    assert frame["agent_id"] == srv.agents["alice"].id
    ws.conn.transport.abort()  # live mode never answers a close frame
    await eventually(lambda: srv.connections("alice")["personal"] == 0)
    ws = await connect(srv, "alice")
    await ws.recv_type("connected")
    assert await ws.until_pong() == []  # the queue was deleted on the first connect


async def test_live_push_has_no_queued_key_and_is_not_redelivered(
    moltcities_live_server: LocalServer, connect: Connector, api_for: ApiFor
) -> None:
    srv = moltcities_live_server
    ws = await connect(srv, "alice")
    await ws.recv_type("connected")
    await api_for(srv).message("bob", "alice", "live")
    pushed = await ws.recv_type("notification")
    assert "queued" not in pushed
    assert pushed["agent_id"] == srv.agents["alice"].id
    ws.conn.transport.abort()
    await eventually(lambda: srv.connections("alice")["personal"] == 0)
    again = await connect(srv, "alice")
    await again.recv_type("connected")
    assert await again.until_pong() == []


async def test_live_offline_queue_keeps_the_newest_100(
    moltcities_live_server: LocalServer, connect: Connector
) -> None:
    srv = moltcities_live_server
    for i in range(105):
        srv.notify("alice", "inbox.message", {"n": i})
    ws = await connect(srv, "alice")
    await ws.recv_type("connected")
    frames = await ws.until_pong()
    assert [f["data"]["n"] for f in frames] == list(range(5, 105))
    assert all(f["queued"] is True for f in frames)


async def test_ping_gets_pong_with_timestamp(
    any_moltcities_server: LocalServer, connect: Connector
) -> None:
    for channel in (None, "town-square"):
        ws = await connect(any_moltcities_server, "alice", channel=channel)
        await ws.recv_type("connected")
        await ws.send({"type": "ping"})
        pong = await ws.recv_type("pong")
        assert isinstance(pong["timestamp"], int)
        assert pong["timestamp"] > 1_700_000_000_000


async def test_documented_subscribe_filters_live_pushes(
    moltcities_server: LocalServer, connect: Connector, api_for: ApiFor
) -> None:
    srv = moltcities_server
    api = api_for(srv)
    ws = await connect(srv, "alice")
    await ws.recv_type("connected")
    await ws.send({"type": "subscribe", "events": ["inbox.message"]})
    assert await ws.recv() == {"type": "subscribed", "events": ["inbox.message"]}
    gb = await api.post("/api/sites/alice/guestbook", "bob", {"message": "filtered out"})
    assert gb.status_code == 201
    assert await ws.until_pong() == []
    await api.message("bob", "alice", "this one passes")
    assert (await ws.recv())["event_type"] == "inbox.message"
    # Filtered is not lost: it stays unacked and comes with the queue on reconnect.
    await ws.conn.close()
    again = await connect(srv, "alice")
    await again.recv_type("connected")
    queued = {f["event_type"] for f in await again.until_pong()}
    assert queued == {"guestbook.entry", "inbox.message"}


async def test_live_subscribe_is_echoed_but_does_not_filter(
    moltcities_live_server: LocalServer, connect: Connector, api_for: ApiFor
) -> None:
    srv = moltcities_live_server
    ws = await connect(srv, "alice")
    await ws.recv_type("connected")
    await ws.send({"type": "subscribe", "events": ["inbox.message"]})
    assert await ws.recv() == {"type": "subscribed", "events": ["inbox.message"]}
    await api_for(srv).post("/api/sites/alice/guestbook", "bob", {"message": "still comes"})
    assert (await ws.recv())["event_type"] == "guestbook.entry"


async def test_subscribe_with_bad_events(
    any_moltcities_server: LocalServer, connect: Connector
) -> None:
    srv = any_moltcities_server
    ws = await connect(srv, "alice")
    await ws.recv_type("connected")
    await ws.send({"type": "subscribe", "events": "not-a-list"})
    frames = await ws.until_pong()
    if srv.mode == "live":
        assert frames == []  # the live server says nothing
    else:
        assert frames[0]["code"] == 4009
        assert "list" in frames[0]["message"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("this is {not json", "Invalid JSON"),
        ("null", "Invalid JSON"),
        ("[]", "Unknown message type"),
        ('{"no_type": true}', "Unknown message type"),
        ('{"type": "frobnicate"}', "Unknown message type"),
    ],
)
async def test_invalid_frames_get_error_4009(
    any_moltcities_server: LocalServer, connect: Connector, raw: str, message: str
) -> None:
    ws = await connect(any_moltcities_server, "alice")
    await ws.recv_type("connected")
    await ws.send(raw)
    assert await ws.recv() == {"type": "error", "code": 4009, "message": message}
    await ws.send({"type": "ping"})  # the connection stays usable
    assert (await ws.recv())["type"] == "pong"


async def test_new_connection_displaces_old_with_4003(
    any_moltcities_server: LocalServer, connect: Connector
) -> None:
    srv = any_moltcities_server
    for channel in (None, "town-square"):
        old = await connect(srv, "alice", channel=channel)
        await old.recv_type("connected")
        new = await connect(srv, "alice", channel=channel)
        await new.recv_type("connected")
        assert await old.closed() == (4003, "New connection opened")
        assert await new.until_pong() == []
    assert srv.connections("alice") == {"personal": 1, "town-square": 1}


async def test_documented_ack_without_id_is_an_error(
    moltcities_server: LocalServer, connect: Connector
) -> None:
    ws = await connect(moltcities_server, "alice")
    await ws.recv_type("connected")
    await ws.send({"type": "ack"})
    assert (await ws.recv())["code"] == 4009
