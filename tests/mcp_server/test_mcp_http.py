"""`moltcities mcp` over streamable HTTP, its resources, and mention wake-ups (both transports)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from mcp import ClientSession, types
from mcp.shared.exceptions import McpError
from pydantic import AnyUrl

from langchain_moltcities.server import LocalServer
from langchain_moltcities.testing import chat_texts, post_as

from .mcp_helpers import (
    STATUS,
    TOWN_SQUARE,
    Recorder,
    http_server,
    http_session,
    mcp_env,
    read_status,
    stdio_session,
    text_of,
    wait_status,
)


@contextlib.asynccontextmanager
async def session_over(
    transport: str, srv: LocalServer, tmp_path: Path, recorder: Recorder
) -> AsyncIterator[ClientSession]:
    """A session with ``moltcities mcp`` for alice over ``transport``."""
    log = tmp_path / "stderr"
    if transport == "stdio":
        with log.open("w") as err:
            async with stdio_session(mcp_env(srv), err, recorder) as session:
                yield session
    else:
        with http_server(mcp_env(srv), log) as url:
            async with http_session(url, recorder) as session:
                yield session


async def test_streamable_http_serves_tools_and_resources(
    moltcities_server: LocalServer, tmp_path: Path
) -> None:
    srv = moltcities_server
    with http_server(mcp_env(srv), tmp_path / "stderr") as url:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/mcp", url), url
        async with http_session(url) as session:
            assert [t.name for t in (await session.list_tools()).tools] == [
                "check_notifications",
                "read_town_square",
                "post_chat",
                "ack_notification",
                "set_subscriptions",
            ]
            status = await wait_status(session, "connected", lambda s: s["connected"])
            assert status["handle"] == "alice"
            assert set(status["channels"]) == {"personal", "town-square"}

            post_as(srv, "bob", "first from bob").raise_for_status()
            posted = await session.call_tool("post_chat", {"message": "alice over HTTP"})
            assert not posted.isError and chat_texts(srv)[-1] == "alice over HTTP"
            await wait_status(session, "2 chats", lambda s: s["unread"]["town_square"] >= 2)

            listed = {str(r.uri) for r in (await session.list_resources()).resources}
            assert listed == {str(STATUS), str(TOWN_SQUARE)}
            square = (await session.read_resource(TOWN_SQUARE)).contents[0]
            assert isinstance(square, types.TextResourceContents)
            assert re.search(r"<untrusted-[0-9a-f]{6}>", square.text), square.text
            assert "first from bob" in square.text and "alice over HTTP" in square.text
            # Reading the resource marks nothing read: the tool still has both.
            read = await session.call_tool("read_town_square", {})
            assert "first from bob" in text_of(read) and "alice over HTTP" in text_of(read)
            assert (await read_status(session))["unread"]["town_square"] == 0

            with pytest.raises(McpError, match="moltcities://status"):
                await session.read_resource(AnyUrl("moltcities://nowhere"))

        # DNS rebinding: a page that points its own name at 127.0.0.1 is turned away.
        async with httpx.AsyncClient() as web:
            rebound = await web.post(
                url,
                headers={"Host": "attacker.example", "Content-Type": "application/json"},
                json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
            )
        assert rebound.status_code in (400, 403, 421), rebound.status_code


@pytest.mark.parametrize("transport", ["stdio", "streamable-http"])
async def test_a_mention_wakes_subscribed_hosts(
    transport: str, moltcities_server: LocalServer, tmp_path: Path
) -> None:
    srv = moltcities_server
    recorder = Recorder()
    async with session_over(transport, srv, tmp_path, recorder) as session:
        caps = session.get_server_capabilities()
        assert caps is not None and caps.resources is not None and caps.resources.subscribe
        await wait_status(session, "connected", lambda s: s["connected"])
        with pytest.raises(McpError, match="takes no subscriptions"):
            await session.subscribe_resource(TOWN_SQUARE)

        post_as(srv, "bob", "no mention here").raise_for_status()
        await wait_status(session, "the chat", lambda s: s["unread"]["town_square"] >= 1)
        await session.subscribe_resource(STATUS)
        post_as(srv, "bob", "@alice wake up!").raise_for_status()
        await recorder.wait_updated(str(STATUS))
        status = await read_status(session)
        assert status["mentions_received"] == 1 and status["unread"]["notifications"] >= 1

        post_as(srv, "carol", "@alice me too").raise_for_status()
        await recorder.wait_updated(str(STATUS), count=2)
        await session.unsubscribe_resource(STATUS)
        post_as(srv, "bob", "@alice and again").raise_for_status()
        await wait_status(session, "3rd mention", lambda s: s["mentions_received"] == 3)
        await session.subscribe_resource(STATUS)
        post_as(srv, "carol", "@alice last one").raise_for_status()
        await recorder.wait_updated(str(STATUS), count=3)
        await wait_status(session, "4th mention", lambda s: s["mentions_received"] == 4)
        # Notifications arrive in order: one for the 3rd mention would have come before this.
        assert recorder.updated == [str(STATUS)] * 3
