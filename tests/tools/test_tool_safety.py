"""What the tools say when things go wrong, and that the API key never shows."""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain_core.messages import ToolMessage

from langchain_moltcities import MoltCitiesClient
from langchain_moltcities.server import LocalServer
from langchain_moltcities.server.pytest_plugin import ServerFactory
from langchain_moltcities.testing import SETTINGS, chat_texts, connected_client, wait_until
from langchain_moltcities.tools import MoltCitiesToolkit

from .test_tools import acall, call, fenced, tools_of

EVERY_CALL: list[tuple[str, dict[str, Any]]] = [
    ("check_notifications", {}),
    ("read_town_square", {}),
    ("post_chat", {"message": "hello"}),
    ("ack_notification", {"notification_id": "notif_x"}),
    ("set_subscriptions", {"events": ["mention"]}),
]


def test_a_rejected_key_is_explained_and_never_shown(moltcities_server: LocalServer) -> None:
    srv = moltcities_server
    wrong_key = "mc_" + "1" * 64
    client = MoltCitiesClient(api_key=wrong_key, base_url=srv.base_url, settings=SETTINGS)
    with client:
        # Both channels: the reading tools below report on one each.
        wait_until(
            lambda: all(c.state == "failed" for c in client.status().channels.values()),
            "the key refusal",
        )
        tools = tools_of(client)
        outs = {name: call(tools[name], args) for name, args in EVERY_CALL}
    for name in ("post_chat", "ack_notification"):
        assert outs[name].status == "error", outs[name].content
        assert "rejected this agent's API key" in str(outs[name].content)
        assert "MOLTCITIES_API_KEY" in str(outs[name].content)
    for name in ("check_notifications", "read_town_square"):
        content = str(outs[name].content)
        assert outs[name].status == "success"
        assert content.startswith("Connection: failed (") and "rejected the API key" in content
        assert "nothing new will arrive until the operator restarts" in content
        assert outs[name].artifact["connection"] == "failed"
    subs = outs["set_subscriptions"]
    assert subs.artifact["confirmed"] is False
    assert "Not confirmed by the server" in str(subs.content)
    assert "down for good" in str(subs.content)
    for out in outs.values():
        assert wrong_key not in str(out.content) + json.dumps(out.artifact)
    assert chat_texts(srv) == []


def test_a_closed_client_answers_reads_from_its_buffer(moltcities_server: LocalServer) -> None:
    srv = moltcities_server
    with connected_client(srv) as client:
        tools = tools_of(client)
        srv.notify("alice", "inbox.message", {"from_handle": "bob", "preview": "kept for later"})
        wait_until(lambda: client.status().channels["personal"].pending >= 1, "the message")
    outs = {name: call(tools[name], args) for name, args in EVERY_CALL}
    read = outs["check_notifications"]
    assert read.status == "success"
    assert "kept for later" in fenced(str(read.content))
    assert str(read.content).startswith("Connection: closed.")
    for name in ("post_chat", "ack_notification", "set_subscriptions"):
        assert outs[name].status == "error", outs[name].content
        assert "Not connected to MoltCities" in str(outs[name].content)
        assert "create a new one" in str(outs[name].content)


def test_subscriptions_set_while_down_apply_after_reconnect(moltcities_server: LocalServer) -> None:
    srv = moltcities_server
    with connected_client(srv) as client:
        tools = tools_of(client)
        srv.stop()
        wait_until(lambda: not client.status().connected, "the client to notice")
        out = call(tools["set_subscriptions"], {"events": ["mention"]})
        assert out.status == "success"
        assert out.artifact["confirmed"] is False and out.artifact["subscribed"] == ["mention"]
        assert "sends it once the connection is back" in str(out.content)
        srv.start()
        wait_until(lambda: client.status().connected, "the reconnect")

        def server_side_filter() -> list[tuple[str, ...]]:
            # What the server's live session filters by: the client's own view can still be
            # the wish it kept, before the new link's echo.
            sessions = srv._call(lambda: list(srv.state.sessions.values()))
            return [
                s.subscriptions
                for s in sessions
                if s.agent.handle == "alice" and s.channel == "personal"
            ]

        wait_until(lambda: server_side_filter() == [("mention",)], "the re-sent subscription")
        srv.notify("alice", "inbox.message", {"from_handle": "bob", "preview": "filtered"})
        srv.notify("alice", "mention", {"by_handle": "bob", "snippet": "@alice wanted"})
        wait_until(lambda: client.status().channels["personal"].pending >= 1, "the mention")
        seen = call(tools["check_notifications"], {})
        assert [r["text"] for r in seen.artifact["notifications"]] == ["@alice wanted"]


def test_overflow_drops_are_reported_once(moltcities_server: LocalServer) -> None:
    srv = moltcities_server
    with connected_client(srv, buffer_size=3) as client:
        check = tools_of(client)["check_notifications"]
        for i in range(5):
            srv.notify("alice", "inbox.message", {"from_handle": "bob", "preview": f"n{i}"})
        wait_until(lambda: client.status().channels["personal"].received >= 5, "5 notifications")
        first = call(check, {"limit": 2})
        assert [r["text"] for r in first.artifact["notifications"]] == ["n2", "n3"]
        assert first.artifact["dropped"] == 2 and first.artifact["remaining"] == 1
        content = str(first.content)
        assert "1 more waiting" in content and "2 older notification(s) were dropped" in content
        second = call(check, {})
        assert second.artifact["dropped"] == 0 and "dropped" not in str(second.content)


@pytest.mark.parametrize(
    "message",
    [
        "mc_\u200b" + "ab12" * 16,  # a zero-width space hides it from a plain pattern
        "\uff4d\uff43\uff3f" + "deadbeef" * 4,  # full-width "mc_"
        "key: MC_" + "F" * 20,
    ],
)
def test_post_chat_sees_through_disguised_keys(
    moltcities_server: LocalServer, message: str
) -> None:
    with connected_client(moltcities_server) as client:
        out = call(tools_of(client)["post_chat"], {"message": message})
        assert out.status == "error" and "Refused" in str(out.content)
        assert "ab12ab12" not in str(out.content) and "deadbeef" not in str(out.content)
    assert chat_texts(moltcities_server) == []


def test_post_chat_keeps_ordinary_mc_words(moltcities_server: LocalServer) -> None:
    with connected_client(moltcities_server) as client:
        out = call(tools_of(client)["post_chat"], {"message": "mc_hammer said mc_ab is cool"})
        assert out.status == "success", out.content
    assert chat_texts(moltcities_server) == ["mc_hammer said mc_ab is cool"]


async def test_the_key_is_in_no_output_repr_or_error(
    moltcities_server_factory: ServerFactory,
) -> None:
    srv = moltcities_server_factory(chat_rate_limit=(1, 60.0))
    key = srv.agents["alice"].api_key
    client = MoltCitiesClient(api_key=key, base_url=srv.base_url, settings=SETTINGS)
    seen: list[str] = []
    async with client:
        assert await client.await_connected(timeout=20)
        toolkit = MoltCitiesToolkit(client=client)
        tools = tools_of(client)
        seen += [repr(toolkit), str(toolkit), json.dumps(toolkit.model_dump(), default=str)]
        for tool in tools.values():
            seen += [repr(tool), str(tool), json.dumps(tool.model_dump(), default=str)]
            seen.append(json.dumps(tool.tool_call_schema.model_json_schema()))  # type: ignore[union-attr]
        for args in (
            {"message": "first"},
            {"message": "second, rate limited"},
            {"message": f"leak {key}"},
            {"message": key.upper()},
            {"message": 42},
        ):
            for out in (call(tools["post_chat"], args), await acall(tools["post_chat"], args)):
                seen += [str(out.content), json.dumps(out.artifact), repr(out)]
        assert any("post again in" in s for s in seen)  # the rate-limit path really ran
        for name, args in EVERY_CALL:
            out = await acall(tools[name], args)
            seen += [str(out.content), json.dumps(out.artifact), repr(out)]
    for name, args in EVERY_CALL:  # and once the client is closed
        after: ToolMessage = call(tools[name], args)
        seen += [str(after.content), json.dumps(after.artifact)]
    leaks = [s for s in seen if key in s or key.upper() in s or key[3:] in s]
    assert leaks == []
    assert chat_texts(srv) == ["first"]
