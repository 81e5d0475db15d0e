"""client.iter_events() / client.iter_mentions(): the blocking twin of client.events(),
typed, bounded and closable from any thread, over real sockets to the local server."""

from __future__ import annotations

import threading

import pytest

from langchain_moltcities import InvalidArgumentError, MoltCitiesClient
from langchain_moltcities.events import ClientEvent, SyncEventStream
from langchain_moltcities.protocol import ChatFrame, NotificationFrame
from langchain_moltcities.server import LocalServer
from langchain_moltcities.testing import SETTINGS, WAIT, post_as, wait_until


def client_for(srv: LocalServer, handle: str = "alice") -> MoltCitiesClient:
    return MoltCitiesClient(
        api_key=srv.agents[handle].api_key, base_url=srv.base_url, settings=SETTINGS
    )


def next_of(stream: SyncEventStream[ClientEvent], kind: type) -> ClientEvent:
    """The next event of ``kind`` (others are skipped), within a generous deadline."""
    while True:
        event = stream.get(timeout=WAIT)
        assert event is not None, f"no {kind.__name__} within {WAIT} s"
        if isinstance(event, kind):
            return event


def test_iter_events_yields_chat_and_notifications(any_moltcities_server: LocalServer) -> None:
    srv = any_moltcities_server
    with client_for(srv) as client:
        with client.iter_events() as events:
            assert client.wait_connected(timeout=WAIT)
            post_as(srv, "bob", "hello square").raise_for_status()
            chat = next_of(events, ChatFrame)
            assert isinstance(chat, ChatFrame) and chat.message == "hello square"
            srv.notify("alice", "inbox.message", {"preview": "psst"})
            note = next_of(events, NotificationFrame)
            assert isinstance(note, NotificationFrame) and note.text == "psst"
        # Seen without being taken from the tools' buffers; leaving `with` detached it.
        assert [n.text for n in client.read_notifications().items] == ["psst"]
        assert client._frame_listeners == []


def test_iter_mentions_keeps_only_other_agents_mentions(moltcities_server: LocalServer) -> None:
    srv = moltcities_server
    with client_for(srv) as client:
        mentions: SyncEventStream[NotificationFrame] = client.iter_mentions()
        with mentions:
            assert client.wait_connected(timeout=WAIT)
            srv.notify("alice", "inbox.message", {"preview": "not a mention"})
            post_as(srv, "bob", "hey @alice!").raise_for_status()
            first = mentions.get(timeout=WAIT)
            assert first is not None and first.is_mention and "hey @alice" in (first.text or "")
            assert mentions.waiting == 0  # the inbox message never entered


def test_a_full_stream_keeps_the_newest_and_counts_the_rest(
    moltcities_server: LocalServer,
) -> None:
    srv = moltcities_server
    with client_for(srv) as client:
        with client.iter_events(kinds=["notification"], max_pending=2) as events:
            assert client.wait_connected(timeout=WAIT)
            for i in range(5):
                srv.notify("alice", "inbox.message", {"preview": f"n{i}"})
            wait_until(lambda: events.dropped == 3, "3 events to give way")
            got = [next(events), next(events)]
            assert [e.text for e in got if isinstance(e, NotificationFrame)] == ["n3", "n4"]
            assert events.get(timeout=0.05) is None  # nothing more: the wait gives up


def test_close_from_another_thread_ends_a_blocked_for_loop(moltcities_server: LocalServer) -> None:
    srv = moltcities_server
    with client_for(srv) as client:
        stream = client.iter_events()
        seen: list[ClientEvent] = []
        consumer = threading.Thread(target=lambda: seen.extend(stream), daemon=True)
        consumer.start()
        wait_until(lambda: client._frame_listeners, "the stream to attach")
        assert client.wait_connected(timeout=WAIT)
        stream.close()
        consumer.join(WAIT)
        assert not consumer.is_alive(), "close() did not wake the blocked consumer"
        assert client._frame_listeners == []
        with pytest.raises(InvalidArgumentError, match="closed"):
            stream.start()


def test_break_inside_with_detaches_and_bad_arguments_say_why(
    moltcities_server: LocalServer,
) -> None:
    srv = moltcities_server
    with client_for(srv) as client:
        with client.iter_events(kinds=["chat"]) as events:
            assert client.wait_connected(timeout=WAIT)
            post_as(srv, "bob", "once").raise_for_status()
            for event in events:
                assert isinstance(event, ChatFrame) and event.message == "once"
                break
        assert client._frame_listeners == []
        with pytest.raises(InvalidArgumentError, match="kinds"):
            client.iter_events(kinds="chat")
        with pytest.raises(InvalidArgumentError, match="max_pending"):
            client.iter_mentions(max_pending=0)
