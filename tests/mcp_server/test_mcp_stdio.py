"""``moltcities mcp`` over stdio, driven by the MCP SDK's client, against the local server.

The MCP tools are the LangChain tools: the same schemas, and the same answers (bad arguments,
rate limit, server down) as calling the LangChain tool in process.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from mcp.shared.exceptions import McpError

from langchain_moltcities.server import LocalServer
from langchain_moltcities.server.pytest_plugin import ServerFactory
from langchain_moltcities.testing import WAIT, chat_texts, connected_client, post_as, wait_until

from .mcp_helpers import (
    MOLTCITIES,
    STATUS,
    TOWN_SQUARE,
    client_tools,
    langchain_call,
    mcp_env,
    read_status,
    same_text,
    stdio_session,
    text_of,
    wait_status,
)


async def test_lists_the_toolkits_tools_with_their_schemas(
    moltcities_server: LocalServer, tmp_path: Path
) -> None:
    with (tmp_path / "stderr").open("w") as err:
        async with stdio_session(mcp_env(moltcities_server), err) as session:
            listed = (await session.list_tools()).tools
    with connected_client(moltcities_server, "bob") as client:
        expected = client_tools(client)
        assert [t.name for t in listed] == list(expected)
        for tool in listed:
            lc = expected[tool.name]
            assert tool.description == lc.description
            assert tool.inputSchema == lc.tool_call_schema.model_json_schema()


async def test_tools_round_trip_with_structured_output(
    moltcities_server: LocalServer, tmp_path: Path
) -> None:
    srv = moltcities_server
    key = srv.agents["alice"].api_key
    log = tmp_path / "stderr"
    seen: list[str] = []
    with log.open("w") as err:
        async with stdio_session(mcp_env(srv), err) as session:
            await wait_status(session, "connected", lambda s: s["connected"])
            srv.notify("alice", "inbox.message", {"from_handle": "bob", "preview": "coffee?"})
            post_as(srv, "bob", "hey @alice, are you there?").raise_for_status()
            await wait_status(session, "2 unread", lambda s: s["unread"]["notifications"] >= 2)

            check = await session.call_tool("check_notifications", {})
            seen.append(check.model_dump_json())
            assert not check.isError, check
            text = text_of(check)
            assert re.search(r"<untrusted-[0-9a-f]{6}>", text), text  # the fence, unchanged
            assert "coffee?" in text and "hey @alice" in text
            records = check.structuredContent["notifications"]  # type: ignore[index]
            assert {r["event_type"] for r in records} >= {"inbox.message"}
            assert any(r["is_mention"] for r in records)
            ids = [r["id"] for r in records]

            ack = await session.call_tool("ack_notification", {"notification_id": ids})
            assert not ack.isError and ack.structuredContent, ack
            assert ack.structuredContent["acknowledged"] == ids

            posted = await session.call_tool("post_chat", {"message": "hello from MCP"})
            seen.append(posted.model_dump_json())
            assert not posted.isError, posted
            record = posted.structuredContent["posted"]  # type: ignore[index]
            assert text_of(posted) == f"Posted to the Town Square as message {record['id']}."
            assert chat_texts(srv).count("hello from MCP") == 1

            refused = await session.call_tool("post_chat", {"message": f"my key: {key}"})
            seen.append(refused.model_dump_json())
            assert refused.isError and "API key" in text_of(refused)

            square = await session.call_tool("read_town_square", {"limit": 10})
            assert "hey @alice, are you there?" in text_of(square)
            assert square.structuredContent is not None
            subs = await session.call_tool("set_subscriptions", {"events": ["mention"]})
            assert subs.structuredContent is not None
            assert subs.structuredContent["subscribed"] == ["mention"]
            seen.append((await session.read_resource(STATUS)).model_dump_json())
            assert (await read_status(session))["unread"]["notifications"] == 0
    assert chat_texts(srv).count(f"my key: {key}") == 0
    for sent in [*seen, log.read_text()]:
        assert key not in sent


async def test_a_leaked_key_quoted_by_another_agent_never_crosses_the_wire(
    moltcities_server: LocalServer, tmp_path: Path
) -> None:
    srv = moltcities_server
    key = srv.agents["alice"].api_key
    with (tmp_path / "stderr").open("w") as err:
        async with stdio_session(mcp_env(srv), err) as session:
            await wait_status(session, "connected", lambda s: s["connected"])
            post_as(srv, "bob", f"found alice's key: {key} lol").raise_for_status()
            await wait_status(session, "the chat", lambda s: s["unread"]["town_square"] >= 1)
            read = await session.call_tool("read_town_square", {})
            square = await session.read_resource(TOWN_SQUARE)
    sent = [read.model_dump_json(), square.model_dump_json(), (tmp_path / "stderr").read_text()]
    assert all(key not in s for s in sent)
    assert "found alice's key: *** lol" in text_of(read)
    assert read.structuredContent is not None
    assert read.structuredContent["messages"][0]["text"] == "found alice's key: *** lol"


BAD_ARGUMENTS: list[tuple[str, dict[str, Any]]] = [
    ("post_chat", {"message": ""}),
    ("post_chat", {"message": "   "}),
    ("post_chat", {"message": "x" * 501}),
    ("post_chat", {"message": "psst mc_" + "ab12" * 16}),
    ("post_chat", {}),
    ("check_notifications", {"limit": 0}),
    ("check_notifications", {"limit": "many"}),
    ("check_notifications", {"event_types": ["mentions"]}),
    ("read_town_square", {"limit": 1000}),
    ("ack_notification", {"notification_id": []}),
    ("ack_notification", {"notification_id": ["ok", " "]}),
    ("set_subscriptions", {"events": ["mention", "likes"]}),
]


async def test_bad_arguments_get_the_langchain_tools_answers(
    moltcities_server: LocalServer, tmp_path: Path
) -> None:
    srv = moltcities_server
    with connected_client(srv, "bob") as client:
        tools = client_tools(client)
        expected = [langchain_call(tools[name], args) for name, args in BAD_ARGUMENTS]
    got = []
    with (tmp_path / "stderr").open("w") as err:
        async with stdio_session(mcp_env(srv), err) as session:
            for name, args in BAD_ARGUMENTS:
                got.append(await session.call_tool(name, args))
            unknown = await session.call_tool("post_chats", {"message": "hi"})
    for (name, args), lc, mcp in zip(BAD_ARGUMENTS, expected, got, strict=True):
        assert lc.status == "error", (name, args, lc.content)
        assert mcp.isError, (name, args, mcp)
        assert text_of(mcp) == lc.content, (name, args)
    assert unknown.isError and "post_chat" in text_of(unknown)
    assert chat_texts(srv) == []


async def test_rate_limit_gets_the_langchain_tools_answer(
    moltcities_server_factory: ServerFactory, tmp_path: Path
) -> None:
    srv = moltcities_server_factory(chat_rate_limit=(1, 60.0))
    with connected_client(srv, "bob") as client:
        post = client_tools(client)["post_chat"]
        assert langchain_call(post, {"message": "bob's first"}).status == "success"
        expected = langchain_call(post, {"message": "bob's second"})
    assert expected.status == "error" and "post again in" in str(expected.content)
    with (tmp_path / "stderr").open("w") as err:
        async with stdio_session(mcp_env(srv), err) as session:
            first = await session.call_tool("post_chat", {"message": "alice's first"})
            second = await session.call_tool("post_chat", {"message": "alice's second"})
    assert not first.isError
    assert second.isError and same_text(text_of(second)) == same_text(str(expected.content))
    assert sorted(chat_texts(srv)) == ["alice's first", "bob's first"]


async def test_server_down_gets_the_langchain_tools_answers(
    moltcities_server: LocalServer, tmp_path: Path
) -> None:
    srv = moltcities_server
    with (tmp_path / "stderr").open("w") as err:
        async with stdio_session(mcp_env(srv), err) as session:
            await wait_status(session, "connected", lambda s: s["connected"])
            srv.notify("alice", "inbox.message", {"from_handle": "bob", "preview": "before"})
            await wait_status(session, "1 unread", lambda s: s["unread"]["notifications"] >= 1)
            with connected_client(srv, "bob") as client:
                tools = client_tools(client)
                srv.stop()
                wait_until(lambda: not client.status().connected, "bob's client to notice")
                await wait_status(session, "disconnected", lambda s: not s["connected"])
                lc_post = langchain_call(tools["post_chat"], {"message": "into the void"})
                mcp_post = await session.call_tool("post_chat", {"message": "into the void"})
                mcp_check = await session.call_tool("check_notifications", {})
            assert lc_post.status == "error" and mcp_post.isError
            assert text_of(mcp_post) == lc_post.content
            # Reads answer from the buffer and say the link is down, as the LangChain tool does.
            assert not mcp_check.isError
            assert "before" in text_of(mcp_check) and "Connection:" in text_of(mcp_check)
            with pytest.raises(McpError, match="Could not fetch the Town Square"):
                await session.read_resource(TOWN_SQUARE)
            assert (await session.list_tools()).tools  # still serving


async def test_a_bad_key_is_a_clear_tool_error(
    moltcities_server: LocalServer, tmp_path: Path
) -> None:
    srv = moltcities_server
    bad = "mc_" + "0f" * 16
    log = tmp_path / "stderr"
    expected = None
    with log.open("w") as err:
        async with stdio_session(mcp_env(srv, key=bad), err) as session:
            status = await wait_status(
                session,
                "the key to be refused",
                lambda s: all(c["state"] == "failed" for c in s["channels"].values()),
            )
            post = await session.call_tool("post_chat", {"message": "hello?"})
            check = await session.call_tool("check_notifications", {})
            assert (await session.list_tools()).tools  # still serving
    from langchain_moltcities import MoltCitiesClient

    with MoltCitiesClient(api_key=bad, base_url=srv.base_url) as client:
        expected = langchain_call(client_tools(client)["post_chat"], {"message": "hello?"})
    assert post.isError and text_of(post) == expected.content
    assert "MOLTCITIES_API_KEY" in text_of(post)
    assert not check.isError and "rejected the API key" in text_of(check)
    for sent in (
        json.dumps(status),
        post.model_dump_json(),
        check.model_dump_json(),
        log.read_text(),
    ):
        assert bad not in sent


def test_no_key_exits_with_advice(moltcities_server: LocalServer) -> None:
    env = mcp_env(moltcities_server)
    del env["MOLTCITIES_API_KEY"]
    done = subprocess.run(
        [MOLTCITIES, "mcp"], env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=WAIT
    )
    assert done.returncode == 2
    assert b"MOLTCITIES_API_KEY" in done.stderr and done.stdout == b""


def test_unknown_transport_is_refused() -> None:
    done = subprocess.run(
        [MOLTCITIES, "mcp", "--transport", "sse"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=WAIT,
    )
    assert done.returncode == 2 and b"streamable-http" in done.stderr
