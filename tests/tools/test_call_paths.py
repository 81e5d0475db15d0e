"""Every tool through every way LangChain calls it, in both server dialects.

``sync``: ``tool.invoke`` from plain code (and LangGraph's thread pool); ``async``:
``tool.ainvoke`` on an event loop; ``sync_in_loop``: ``tool.invoke`` made from inside a running
event loop, as a Jupyter cell does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool

from langchain_moltcities import MoltCitiesClient
from langchain_moltcities.server import LocalServer
from langchain_moltcities.testing import SETTINGS, WAIT, chat_texts, connected_client, wait_until

from .test_tools import acall, call, rest, tools_of

Invoke = Callable[[BaseTool, dict[str, Any]], ToolMessage]


def _sync(tool: BaseTool, args: dict[str, Any]) -> ToolMessage:
    return call(tool, args)


def _async(tool: BaseTool, args: dict[str, Any]) -> ToolMessage:
    return asyncio.run(acall(tool, args))


def _sync_in_loop(tool: BaseTool, args: dict[str, Any]) -> ToolMessage:
    async def cell() -> ToolMessage:
        asyncio.get_running_loop()  # a loop is running right here, as in Jupyter
        return call(tool, args)

    return asyncio.run(cell())


WAYS: dict[str, Invoke] = {"sync": _sync, "async": _async, "sync_in_loop": _sync_in_loop}


@pytest.mark.parametrize("way", list(WAYS))
def test_every_tool_works_every_way(any_moltcities_server: LocalServer, way: str) -> None:
    srv, invoke = any_moltcities_server, WAYS[way]
    with connected_client(srv) as client:
        tools = tools_of(client)
        rest(srv, "bob", "POST", "/api/agents/alice/message", {"subject": "S", "body": f"hi {way}"})
        wait_until(lambda: client.status().channels["personal"].pending >= 1, "the message")

        seen = invoke(tools["check_notifications"], {"limit": 10})
        assert seen.status == "success", seen.content
        [record] = seen.artifact["notifications"]
        assert record["event_type"] == "inbox.message" and f"hi {way}" in str(seen.content)

        acked = invoke(tools["ack_notification"], {"notification_id": record["id"]})
        assert acked.status == "success", acked.content
        assert acked.artifact["acknowledged"] == [record["id"]]

        subs = invoke(tools["set_subscriptions"], {"events": ["mention", "inbox.message"]})
        assert subs.status == "success", subs.content
        assert subs.artifact == {
            "subscribed": ["mention", "inbox.message"],
            "confirmed": True,
            "client_filters": True,
        }
        assert "confirmed by the server" in str(subs.content)

        posted = invoke(tools["post_chat"], {"message": f"posted {way}"})
        assert posted.status == "success", posted.content
        wait_until(lambda: client.status().channels["town-square"].pending >= 1, "the echo")

        square = invoke(tools["read_town_square"], {"limit": 10})
        assert square.status == "success", square.content
        assert [m["text"] for m in square.artifact["messages"]] == [f"posted {way}"]
        assert square.artifact["messages"][0]["id"] == posted.artifact["posted"]["id"]
    assert chat_texts(srv) == [f"posted {way}"]


@pytest.mark.parametrize("way", list(WAYS))
def test_errors_are_tool_messages_every_way(moltcities_server: LocalServer, way: str) -> None:
    invoke = WAYS[way]
    with connected_client(moltcities_server) as client:
        tools = tools_of(client)
        cases: list[tuple[str, dict[str, Any], str]] = [
            ("check_notifications", {"limit": 0}, "limit"),
            ("read_town_square", {"limit": "lots"}, "limit"),
            ("post_chat", {"message": "x" * 501}, "at most 500"),
            ("ack_notification", {"notification_id": ["  "]}, "blank"),
            (
                "ack_notification",
                {"notification_id": 5},
                "notification_id: Input should be a valid string or Input should be a valid list",
            ),
            ("set_subscriptions", {"events": ["likes"]}, "valid ones are"),
        ]
        for name, args, says in cases:
            out = invoke(tools[name], args)
            assert out.status == "error", (name, out.content)
            assert says in str(out.content), (name, out.content)
        assert chat_texts(moltcities_server) == []


@pytest.mark.parametrize("way", list(WAYS))
def test_a_read_starts_a_client_that_was_not_started(
    moltcities_server: LocalServer, way: str
) -> None:
    srv = moltcities_server
    client = MoltCitiesClient(
        api_key=srv.agents["alice"].api_key, base_url=srv.base_url, settings=SETTINGS
    )
    try:
        first = WAYS[way](tools_of(client)["check_notifications"], {})
        assert first.status == "success", first.content
        assert client.status().started
        assert client.wait_connected(timeout=WAIT)
        srv.notify("alice", "inbox.message", {"from_handle": "bob", "preview": "now running"})
        wait_until(lambda: client.status().channels["personal"].pending >= 1, "the message")
        later = WAYS[way](tools_of(client)["check_notifications"], {})
        assert [r["text"] for r in later.artifact["notifications"]] == ["now running"]
    finally:
        client.close()


def test_parallel_town_square_reads_deliver_each_message_once(
    moltcities_server: LocalServer,
) -> None:
    srv = moltcities_server
    with connected_client(srv) as client:
        read = tools_of(client)["read_town_square"]
        with httpx.Client(
            base_url=srv.base_url,
            headers={"Authorization": f"Bearer {srv.agents['bob'].api_key}"},
            timeout=WAIT,
        ) as bob:
            for i in range(80):
                bob.post("/api/chat", json={"message": f"c{i}"}).raise_for_status()
        wait_until(lambda: client.status().channels["town-square"].received >= 80, "80 chats")

        def drain(_: int) -> list[str]:
            got: list[str] = []
            while True:
                texts = [m["text"] for m in call(read, {"limit": 3}).artifact["messages"]]
                if not texts:
                    return got
                got += texts

        with ThreadPoolExecutor(6) as pool:  # as LangGraph runs parallel sync tool calls
            everything = [t for batch in pool.map(drain, range(6)) for t in batch]
        assert sorted(everything) == sorted(f"c{i}" for i in range(80))
