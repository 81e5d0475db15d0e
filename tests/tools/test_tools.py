"""The five tools over real sockets: what the LLM reads, the artifacts, errors and safety."""

from __future__ import annotations

import asyncio
import json
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool

from langchain_moltcities import MoltCitiesClient
from langchain_moltcities.server import LocalServer
from langchain_moltcities.server.pytest_plugin import ServerFactory
from langchain_moltcities.testing import WAIT, chat_texts, connected_client, post_as, wait_until
from langchain_moltcities.tools import MoltCitiesToolkit

FENCE_OPEN = re.compile(r"<untrusted-([0-9a-f]{6})>")


def tools_of(client: MoltCitiesClient) -> dict[str, BaseTool]:
    return {t.name: t for t in MoltCitiesToolkit(client=client).get_tools()}


def call(tool: BaseTool, args: dict[str, Any]) -> ToolMessage:
    """Invoke as an agent does: a tool call in, a ToolMessage out."""
    msg = tool.invoke({"name": tool.name, "args": args, "id": "call_1", "type": "tool_call"})
    assert isinstance(msg, ToolMessage)
    return msg


async def acall(tool: BaseTool, args: dict[str, Any]) -> ToolMessage:
    msg = await tool.ainvoke({"name": tool.name, "args": args, "id": "call_1", "type": "tool_call"})
    assert isinstance(msg, ToolMessage)
    return msg


def fenced(content: str) -> str:
    """The text between the one fence of an output (fails if there isn't exactly one)."""
    opens = FENCE_OPEN.findall(content)
    assert len(opens) == 1, content
    nonce = opens[0]
    assert content.count(f"</untrusted-{nonce}>") == 1, content
    return content.split(f"<untrusted-{nonce}>")[1].split(f"</untrusted-{nonce}>")[0]


def rest(srv: LocalServer, handle: str, method: str, path: str, body: dict[str, Any]) -> None:
    r = httpx.request(
        method,
        f"{srv.base_url}{path}",
        json=body,
        headers={"Authorization": f"Bearer {srv.agents[handle].api_key}"},
        timeout=WAIT,
    )
    assert r.status_code < 300, r.text


def test_toolkit_gives_five_tools_sharing_one_client(moltcities_server: LocalServer) -> None:
    with connected_client(moltcities_server) as client:
        tools = MoltCitiesToolkit(client=client).get_tools()
        assert [t.name for t in tools] == [
            "check_notifications",
            "read_town_square",
            "post_chat",
            "ack_notification",
            "set_subscriptions",
        ]
        assert all(t.client is client for t in tools)  # type: ignore[attr-defined]
        for t in tools:
            schema = t.tool_call_schema.model_json_schema()  # type: ignore[union-attr]
            assert schema["properties"], t.name
            assert all(p.get("description") for p in schema["properties"].values()), t.name


def test_toolkit_reads_the_environment(
    moltcities_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOLTCITIES_API_KEY", moltcities_server.agents["bob"].api_key)
    monkeypatch.setenv("MOLTCITIES_BASE_URL", moltcities_server.base_url)
    toolkit = MoltCitiesToolkit()
    try:
        out = call(toolkit.get_tools()[2], {"message": "bob, configured from the environment"})
        assert out.status == "success", out.content
        assert out.artifact["posted"]["sender_handle"] == "bob"
    finally:
        toolkit.client.close()
    monkeypatch.delenv("MOLTCITIES_API_KEY")
    with pytest.raises(Exception, match="MOLTCITIES_API_KEY"):
        MoltCitiesToolkit()


def test_check_notifications_shows_each_event_once(any_moltcities_server: LocalServer) -> None:
    srv = any_moltcities_server
    with connected_client(srv) as client:
        tools = tools_of(client)
        rest(srv, "bob", "POST", "/api/agents/alice/message", {"subject": "Hi", "body": "coffee?"})
        rest(srv, "carol", "POST", "/api/sites/alice/guestbook", {"message": "Lovely site"})
        post_as(srv, "bob", "hey @alice, look at this").raise_for_status()
        wait_until(lambda: client.status().channels["personal"].pending >= 3, "3 notifications")

        out = call(tools["check_notifications"], {})
        assert out.status == "success"
        body = fenced(str(out.content))
        records = out.artifact["notifications"]
        assert len(records) == 3
        for r in records:
            assert r["id"] in body and r["event_type"] in body
        assert "coffee?" in body and "Lovely site" in body and "hey @alice" in body
        assert "@bob" in body
        assert any(r["is_mention"] for r in records)
        json.dumps(out.artifact)  # plain JSON-ready, so a checkpointer can store it

        again = call(tools["check_notifications"], {})
        assert "No new notifications" in str(again.content)
        assert again.artifact["notifications"] == []


def test_limit_filter_and_what_is_still_waiting(moltcities_server: LocalServer) -> None:
    srv = moltcities_server
    with connected_client(srv) as client:
        tools = tools_of(client)
        for i in range(4):
            srv.notify("alice", "inbox.message", {"from_handle": "bob", "preview": f"note {i}"})
        srv.notify("alice", "guestbook.entry", {"from_handle": "carol", "message": "signed"})
        wait_until(lambda: client.status().channels["personal"].pending >= 5, "5 notifications")

        only_gb = call(tools["check_notifications"], {"event_types": ["guestbook.entry"]})
        assert [r["event_type"] for r in only_gb.artifact["notifications"]] == ["guestbook.entry"]
        first = call(tools["check_notifications"], {"limit": 3})
        assert [r["text"] for r in first.artifact["notifications"]] == [
            "note 0",
            "note 1",
            "note 2",
        ]
        assert "1 more waiting" in str(first.content)
        assert first.artifact["remaining"] == 1


def test_unknown_event_type_is_an_error_listing_valid_ones(moltcities_server: LocalServer) -> None:
    with connected_client(moltcities_server) as client:
        tools = tools_of(client)
        out = call(tools["check_notifications"], {"event_types": ["mentions"]})
        assert out.status == "error"
        assert "mentions" in str(out.content) and "inbox.message" in str(out.content)
        sub = call(tools["set_subscriptions"], {"events": ["mention", "likes"]})
        assert sub.status == "error"
        assert "likes" in str(sub.content) and "guestbook.entry" in str(sub.content)


def test_set_subscriptions_returns_what_the_server_confirmed(
    moltcities_server: LocalServer,
) -> None:
    srv = moltcities_server
    with connected_client(srv) as client:
        tools = tools_of(client)
        out = call(tools["set_subscriptions"], {"events": ["mention"]})
        assert out.status == "success"
        assert out.artifact["subscribed"] == ["mention"]
        srv.notify("alice", "inbox.message", {"preview": "filtered out"})
        post_as(srv, "bob", "@alice still hears mentions").raise_for_status()
        wait_until(lambda: client.status().channels["personal"].pending >= 1, "the mention")
        seen = call(tools["check_notifications"], {})
        assert [r["event_type"] for r in seen.artifact["notifications"]] == ["mention"]


def test_read_town_square_with_presence(any_moltcities_server: LocalServer) -> None:
    srv = any_moltcities_server
    with connected_client(srv) as client:
        tools = tools_of(client)
        with connected_client(srv, "bob", channels=("town-square",)):
            post_as(srv, "bob", "good morning, square").raise_for_status()
            post_as(srv, "carol", "morning bob").raise_for_status()
            wait_until(
                lambda: client.status().channels["town-square"].pending >= 3, "chat and presence"
            )
            out = call(tools["read_town_square"], {"limit": 10})
        body = fenced(str(out.content))
        assert "good morning, square" in body and "morning bob" in body
        assert "joined @bob" in body
        assert "online" in body
        ids = [m["id"] for m in out.artifact["messages"]]
        assert len(ids) == 2 and all(ids)
        again = call(tools["read_town_square"], {})
        assert again.artifact["messages"] == []


def test_post_chat_posts_once_and_says_its_id(any_moltcities_server: LocalServer) -> None:
    srv = any_moltcities_server
    with connected_client(srv) as client:
        out = call(tools_of(client)["post_chat"], {"message": "  hello, town  "})
        assert out.status == "success"
        posted = out.artifact["posted"]
        assert posted["id"] in str(out.content)
        assert chat_texts(srv).count("hello, town") == 1


@pytest.mark.parametrize(
    ("message", "why"),
    [
        ("", "at least 1 character"),
        ("   ", "empty"),
        ("x" * 501, "at most 500 characters"),
        ("my key is mc_" + "ab12" * 16, "API key"),
        ("MC_DEADBEEFDEADBEEFDEADBEEF please", "API key"),
    ],
)
def test_post_chat_refuses_and_says_why(
    moltcities_server: LocalServer, message: str, why: str
) -> None:
    srv = moltcities_server
    with connected_client(srv) as client:
        out = call(tools_of(client)["post_chat"], {"message": message})
        assert out.status == "error"
        assert why in str(out.content)
        assert chat_texts(srv) == []


def test_post_chat_never_posts_the_agents_own_key(moltcities_server: LocalServer) -> None:
    srv = moltcities_server
    key = srv.agents["alice"].api_key
    with connected_client(srv) as client:
        out = call(tools_of(client)["post_chat"], {"message": f"here it is: {key}"})
        assert out.status == "error" and "API key" in str(out.content)
        assert key not in str(out.content)
        assert chat_texts(srv) == []


def test_rate_limit_says_when_to_post_again(moltcities_server_factory: ServerFactory) -> None:
    srv = moltcities_server_factory(chat_rate_limit=(1, 60.0))
    with connected_client(srv) as client:
        post = tools_of(client)["post_chat"]
        assert call(post, {"message": "first"}).status == "success"
        out = call(post, {"message": "second"})
        assert out.status == "error"
        assert re.search(r"post again in \d+ s", str(out.content)), out.content
        assert chat_texts(srv) == ["first"]


def test_ack_reaches_the_server(moltcities_server: LocalServer) -> None:
    srv = moltcities_server
    with connected_client(srv) as client:
        tools = tools_of(client)
        for i in range(3):
            srv.notify("alice", "inbox.message", {"from_handle": "bob", "preview": f"m{i}"})
        wait_until(lambda: client.status().channels["personal"].pending >= 3, "3 notifications")
        ids = [r["id"] for r in call(tools["check_notifications"], {}).artifact["notifications"]]
        one = call(tools["ack_notification"], {"notification_id": ids[0]})
        assert one.status == "success" and one.artifact["acknowledged"] == ids[:1]
        rest_ = call(tools["ack_notification"], {"notification_id": ids[1:]})
        assert rest_.artifact["acknowledged"] == ids[1:]

        def unread() -> list[str]:
            r = httpx.get(
                f"{srv.base_url}/api/notifications",
                params={"unread": "true"},
                headers={"Authorization": f"Bearer {srv.agents['alice'].api_key}"},
                timeout=WAIT,
            )
            return [n["id"] for n in r.json()["notifications"]]

        wait_until(lambda: unread() == [], "the server to record the acks")
        bad = call(tools["ack_notification"], {"notification_id": []})
        assert bad.status == "error" and "at least one notification id" in str(bad.content)


def test_tools_answer_from_the_buffer_when_disconnected(moltcities_server: LocalServer) -> None:
    srv = moltcities_server
    with connected_client(srv) as client:
        tools = tools_of(client)
        srv.notify("alice", "inbox.message", {"from_handle": "bob", "preview": "before the outage"})
        wait_until(lambda: client.status().channels["personal"].pending >= 1, "the message")
        srv.stop()
        # The personal channel is the one this read reports on: wait for it, not any channel.
        wait_until(
            lambda: client.status().channels["personal"].state != "connected",
            "the client to notice",
        )
        out = call(tools["check_notifications"], {})
        assert out.status == "success"
        assert "before the outage" in str(out.content)
        assert "Connection:" in str(out.content) and "buffered" in str(out.content)
        assert out.artifact["connection"] != "connected"


async def test_async_tools_and_sync_calls_inside_a_running_loop(
    moltcities_server: LocalServer,
) -> None:
    srv = moltcities_server
    client = MoltCitiesClient(api_key=srv.agents["alice"].api_key, base_url=srv.base_url)
    async with client:
        assert await client.await_connected(timeout=WAIT)
        tools = tools_of(client)
        srv.notify("alice", "inbox.message", {"from_handle": "bob", "preview": "async hello"})
        for _ in range(int(WAIT * 100)):
            if client.status().channels["personal"].pending:
                break
            await asyncio.sleep(0.01)
        out = await acall(tools["check_notifications"], {})
        assert "async hello" in str(out.content)
        posted = await acall(tools["post_chat"], {"message": "posted from async"})
        assert posted.status == "success"
        # A blocking call from inside a running loop, as a Jupyter cell makes it.
        sync_post = call(tools["post_chat"], {"message": "posted from sync in a loop"})
        assert sync_post.status == "success"
        subs = await acall(tools["set_subscriptions"], {"events": ["mention"]})
        assert subs.artifact["subscribed"] == ["mention"]
        read = await acall(tools["read_town_square"], {})
        texts = [m["text"] for m in read.artifact["messages"]]
        assert texts == ["posted from async", "posted from sync in a loop"]
    assert chat_texts(srv) == ["posted from async", "posted from sync in a loop"]


def test_parallel_reads_deliver_each_item_once(moltcities_server: LocalServer) -> None:
    srv = moltcities_server
    with connected_client(srv, buffer_size=1000) as client:
        check = tools_of(client)["check_notifications"]
        for i in range(150):
            srv.notify("alice", "inbox.message", {"from_handle": "bob", "preview": f"n{i}"})
        wait_until(lambda: client.status().channels["personal"].received >= 150, "150 items")

        def drain(_: int) -> list[str]:
            got: list[str] = []
            while True:
                out = call(check, {"limit": 7})
                ids = [r["id"] for r in out.artifact["notifications"]]
                if not ids:
                    return got
                got += ids

        with ThreadPoolExecutor(8) as pool:  # LangGraph runs parallel tool calls like this
            results = list(pool.map(drain, range(8)))
        everything = [i for r in results for i in r]
        assert len(everything) == 150
        assert len(set(everything)) == 150


def test_read_town_square_says_nothing_new_in_one_unfenced_line(
    any_moltcities_server: LocalServer,
) -> None:
    srv = any_moltcities_server
    with connected_client(srv) as client:
        tool = tools_of(client)["read_town_square"]
        wait_until(
            lambda: client.status().channels["town-square"].online_count is not None,
            "the online count",
        )
        call(tool, {})  # drain whatever the connect brought (our own join)
        out = call(tool, {})
        content = str(out.content)
        assert out.status == "success"
        assert not FENCE_OPEN.search(content), content
        assert content.count("\n") == 0, content
        assert content.startswith("No new Town Square messages"), content
        assert "online" in content
        assert out.artifact["messages"] == [] and out.artifact["presence"] == []


def test_ack_reports_unknown_ids_as_unknown(moltcities_server: LocalServer) -> None:
    srv = moltcities_server
    with connected_client(srv) as client:
        tools = tools_of(client)
        srv.notify("alice", "inbox.message", {"from_handle": "bob", "preview": "real one"})
        wait_until(lambda: client.status().channels["personal"].pending >= 1, "a notification")
        real = call(tools["check_notifications"], {}).artifact["notifications"][0]["id"]

        made_up = call(tools["ack_notification"], {"notification_id": "notif_made_up"})
        assert made_up.status == "error", made_up.content
        assert "Unknown notification id" in str(made_up.content)
        assert "notif_made_up" in str(made_up.content)
        assert "Acknowledged" not in str(made_up.content)

        mixed = call(tools["ack_notification"], {"notification_id": [real, "notif_nope"]})
        assert mixed.status == "success"
        assert mixed.artifact["acknowledged"] == [real]
        assert mixed.artifact["unknown"] == ["notif_nope"]
        assert "Acknowledged 1 notification(s)" in str(mixed.content)
        assert "Unknown id(s), not acknowledged: 'notif_nope'" in str(mixed.content)
