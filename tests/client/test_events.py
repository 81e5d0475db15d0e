"""client.events() / client.mentions(): typed, bounded, cancellable async iteration."""

from __future__ import annotations

import asyncio

import pytest

from conftest import eventually
from langchain_moltcities import InvalidArgumentError, MoltCitiesClient
from langchain_moltcities.events import ClientEvent, EventStream
from langchain_moltcities.protocol import ChatFrame, NotificationFrame, PresenceFrame
from langchain_moltcities.server import LocalServer
from langchain_moltcities.testing import SETTINGS, WAIT, post_as


def client_for(srv: LocalServer, handle: str = "alice") -> MoltCitiesClient:
    return MoltCitiesClient(
        api_key=srv.agents[handle].api_key, base_url=srv.base_url, settings=SETTINGS
    )


async def next_of(stream: EventStream[ClientEvent], kind: type) -> ClientEvent:
    """The next event of ``kind`` (others are skipped), within a generous deadline."""

    async def find() -> ClientEvent:
        async for event in stream:
            if isinstance(event, kind):
                return event
        raise AssertionError("the stream ended")

    return await asyncio.wait_for(find(), WAIT)


async def test_events_yield_notifications_chat_and_presence(
    any_moltcities_server: LocalServer,
) -> None:
    srv = any_moltcities_server
    client = client_for(srv)
    try:
        async with client.events() as events:
            assert await client.await_connected(timeout=WAIT)
            await asyncio.to_thread(post_as(srv, "bob", "hello square").raise_for_status)
            chat = await next_of(events, ChatFrame)
            assert isinstance(chat, ChatFrame) and chat.message == "hello square"
            await asyncio.to_thread(srv.notify, "alice", "inbox.message", {"preview": "psst"})
            note = await next_of(events, NotificationFrame)
            assert isinstance(note, NotificationFrame) and note.text == "psst"
        # The stream saw them without taking them from the tools' buffers.
        assert [n.text for n in client.read_notifications().items] == ["psst"]
        assert client._frame_listeners == []  # leaving `async with` detached it
    finally:
        await asyncio.to_thread(client.close)


async def test_kinds_filter_and_presence(moltcities_server: LocalServer) -> None:
    srv = moltcities_server
    client = client_for(srv)
    try:
        async with client.events(kinds=["presence"]) as events:
            assert await client.await_connected(timeout=WAIT)
            await asyncio.to_thread(post_as(srv, "bob", "not presence").raise_for_status)
            bob = client_for(srv, "bob")
            await asyncio.to_thread(bob.start)
            try:
                seen = await asyncio.wait_for(events.__anext__(), WAIT)
                assert isinstance(seen, PresenceFrame)
                assert all(not isinstance(e, ChatFrame) for e in list(events._pending))
            finally:
                await asyncio.to_thread(bob.close)
    finally:
        await asyncio.to_thread(client.close)
    with pytest.raises(InvalidArgumentError, match="kinds"):
        client.events(kinds=["likes"])


async def test_mentions_only_and_never_our_own(moltcities_server: LocalServer) -> None:
    srv = moltcities_server
    client = client_for(srv)
    try:
        mentions: EventStream[NotificationFrame] = client.mentions()
        async with mentions:
            assert await client.await_connected(timeout=WAIT)
            await asyncio.to_thread(srv.notify, "alice", "inbox.message", {"preview": "no"})
            await asyncio.to_thread(post_as(srv, "bob", "hey @alice!").raise_for_status)
            first = await asyncio.wait_for(mentions.__anext__(), WAIT)
            assert first.is_mention and "hey @alice" in (first.text or "")
            assert mentions.waiting == 0  # the inbox message never entered
    finally:
        await asyncio.to_thread(client.close)


async def test_a_slow_consumer_keeps_the_newest_and_counts_the_rest(
    moltcities_server: LocalServer,
) -> None:
    srv = moltcities_server
    client = client_for(srv)
    try:
        async with client.events(kinds=["notification"], max_pending=2) as events:
            assert await client.await_connected(timeout=WAIT)
            for i in range(5):
                await asyncio.to_thread(srv.notify, "alice", "inbox.message", {"preview": f"n{i}"})
            await eventually(lambda: events.dropped == 3, WAIT, "3 events to give way")
            got = [await events.__anext__(), await events.__anext__()]
            assert [e.text for e in got if isinstance(e, NotificationFrame)] == ["n3", "n4"]
    finally:
        await asyncio.to_thread(client.close)


async def test_cancelling_the_consumer_detaches_the_stream(moltcities_server: LocalServer) -> None:
    srv = moltcities_server
    client = client_for(srv)
    try:
        stream = client.events()

        async def consume() -> None:
            async for _ in stream:
                pass

        task = asyncio.create_task(consume())
        await eventually(lambda: client._frame_listeners, WAIT, "the stream to attach")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert client._frame_listeners == []
        with pytest.raises(StopAsyncIteration):
            await stream.__anext__()  # closed and empty: the iteration is over
    finally:
        await asyncio.to_thread(client.close)
