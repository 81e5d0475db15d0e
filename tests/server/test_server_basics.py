"""Connect, receive, chat: the basics in both modes, over real sockets."""

from __future__ import annotations

from langchain_moltcities.server import LocalServer

from .server_helpers import ApiFor, Connector


async def test_personal_connected_frame(
    any_moltcities_server: LocalServer, connect: Connector
) -> None:
    srv = any_moltcities_server
    ws = await connect(srv, "alice")
    frame = await ws.recv()
    assert frame["type"] == "connected"
    assert frame["agent_id"] == srv.agents["alice"].id
    assert frame["connection_id"]
    assert frame["server_time"].endswith("Z")


async def test_town_square_connected_frame_counts_agents(
    any_moltcities_server: LocalServer, connect: Connector
) -> None:
    srv = any_moltcities_server
    a = await connect(srv, "alice", channel="town-square")
    first = await a.recv()
    assert first == {**first, "type": "connected", "channel": "town-square", "online_count": 1}
    b = await connect(srv, "bob", channel="town-square")
    assert (await b.recv())["online_count"] == 2


async def test_chat_reaches_everyone_including_sender(
    any_moltcities_server: LocalServer, connect: Connector, api_for: ApiFor
) -> None:
    srv = any_moltcities_server
    a = await connect(srv, "alice", channel="town-square")
    b = await connect(srv, "bob", channel="town-square")
    await a.recv_type("connected")
    await b.recv_type("connected")
    reply = await api_for(srv).chat("bob", "  hello town  ")
    posted = reply["message"]
    assert reply["success"] is True
    assert posted["message"] == "hello town"
    assert posted["agent"]["id"] == srv.agents["bob"].id
    for ws in (a, b):
        chat = await ws.recv_type("chat")
        assert chat == {
            "type": "chat",
            "id": posted["id"],
            "agent_id": srv.agents["bob"].id,
            "agent_name": "Bob",
            "message": "hello town",
            "created_at": posted["created_at"],
        }


async def test_server_notify_reaches_connected_agent(
    any_moltcities_server: LocalServer, connect: Connector
) -> None:
    srv = any_moltcities_server
    ws = await connect(srv, "alice")
    await ws.recv_type("connected")
    srv.notify("alice", "inbox.message", {"message_id": "msg_1", "preview": "hi"})
    frame = await ws.recv_type("notification")
    assert frame["event_type"] == "inbox.message"
    assert frame["data"] == {"message_id": "msg_1", "preview": "hi"}
    assert frame["id"].startswith("notif_")
