"""The first read of a fresh toolkit: notifications queued while offline are not missed."""

from __future__ import annotations

import asyncio
import socket

from langchain_moltcities import MoltCitiesClient
from langchain_moltcities.server import LocalServer
from langchain_moltcities.testing import SETTINGS
from langchain_moltcities.tools import MoltCitiesToolkit

from .test_tools import acall, call


def fresh_client(srv: LocalServer, handle: str = "alice") -> MoltCitiesClient:
    """A client nobody started: the toolkit's first call starts it, as for a new user."""
    return MoltCitiesClient(
        api_key=srv.agents[handle].api_key, base_url=srv.base_url, settings=SETTINGS
    )


def test_first_check_shows_what_was_queued_while_offline(
    any_moltcities_server: LocalServer,
) -> None:
    srv = any_moltcities_server
    srv.notify("alice", "inbox.message", {"from_handle": "bob", "preview": "queued for you"})
    client = fresh_client(srv)
    try:
        tool = MoltCitiesToolkit(client=client, first_read_wait=20).get_tools()[0]
        out = call(tool, {})
        assert out.status == "success"
        assert "queued for you" in str(out.content), out.content
        assert len(out.artifact["notifications"]) == 1
        assert "Just started connecting" not in str(out.content)
    finally:
        client.close()


async def test_first_async_check_waits_off_the_loop(moltcities_server: LocalServer) -> None:
    srv = moltcities_server
    srv.notify("alice", "inbox.message", {"from_handle": "bob", "preview": "queued async"})
    client = fresh_client(srv)
    try:
        tool = MoltCitiesToolkit(client=client, first_read_wait=20).get_tools()[0]
        ticks = 0

        async def ticker() -> None:  # keeps running only if the loop is never blocked
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.005)

        task = asyncio.create_task(ticker())
        out = await acall(tool, {})
        task.cancel()
        assert "queued async" in str(out.content), out.content
        assert ticks > 1
    finally:
        await asyncio.to_thread(client.close)


def test_without_a_wait_the_first_read_says_to_look_again(moltcities_server: LocalServer) -> None:
    client = fresh_client(moltcities_server)
    try:
        tool = MoltCitiesToolkit(client=client, first_read_wait=0).get_tools()[0]
        first = str(call(tool, {}).content)
        assert "Just started connecting" in first, first
        assert "call check_notifications again" in first.lower(), first
        assert client.wait_connected(timeout=20)
        later = str(call(tool, {}).content)
        assert "Just started connecting" not in later, later
    finally:
        client.close()


def test_an_unreachable_server_ends_the_wait_with_a_plain_note() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = MoltCitiesClient(
        api_key="mc_" + "ab" * 32, base_url=f"http://127.0.0.1:{port}", settings=SETTINGS
    )
    try:
        toolkit = MoltCitiesToolkit(client=client, first_read_wait=0.3)
        tools = {t.name: t for t in toolkit.get_tools()}
        out = call(tools["read_town_square"], {})
        content = str(out.content)
        assert "Just started connecting" in content, content
        assert "read_town_square again" in content, content
    finally:
        client.close()
