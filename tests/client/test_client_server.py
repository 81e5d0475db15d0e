"""MoltCitiesClient against the local MoltCities server, in both modes, over real sockets.

Faults come from the server's hooks (drop, restart, freeze, close codes, refused handshakes).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Literal

import httpx
import pytest

from conftest import fast_settings, wait_until
from langchain_moltcities import (
    ApiError,
    InvalidArgumentError,
    MoltCitiesClient,
    NotConnectedError,
    RateLimitError,
)
from langchain_moltcities.protocol import ChatFrame, NotificationFrame
from langchain_moltcities.server import LocalServer

MENTION_TYPES = {"mention", "mention.chat", "mention.town_square"}


def client_for(srv: LocalServer, agent: str = "alice", **kw: Any) -> MoltCitiesClient:
    kw.setdefault("settings", fast_settings())
    return MoltCitiesClient(api_key=srv.agents[agent].api_key, base_url=srv.base_url, **kw)


def post_as(srv: LocalServer, agent: str, text: str) -> dict[str, Any]:
    r = httpx.post(
        f"{srv.base_url}/api/chat",
        json={"message": text},
        headers={"Authorization": f"Bearer {srv.agents[agent].api_key}"},
        timeout=10,
    )
    r.raise_for_status()
    body: dict[str, Any] = r.json()
    return body


def inbox(srv: LocalServer, to: str = "alice", text: str = "hi") -> None:
    srv.notify(
        to,
        "inbox.message",
        {"message_id": f"m-{text}", "from_agent_id": srv.agents["bob"].id, "preview": text},
    )


def texts(items: list[NotificationFrame]) -> list[str | None]:
    return [n.text for n in items]


def collect(client: MoltCitiesClient, want: int, **kw: Any) -> list[NotificationFrame]:
    got: list[NotificationFrame] = []

    def enough() -> bool:
        got.extend(client.read_notifications(**kw).items)
        return len(got) >= want

    wait_until(enough, what=f"{want} notifications")
    return got


# ---------------------------------------------------------------- connecting & identity


def test_connects_both_channels_and_learns_who_it_is(any_moltcities_server: LocalServer) -> None:
    # Live: /api/me names no handle; the client learns it from GET /api/my/sites.
    srv = any_moltcities_server
    with client_for(srv) as client:
        assert client.wait_connected(timeout=15)
        st = client.status()
        assert set(st.channels) == {"personal", "town-square"}
        assert all(c.connect_count == 1 for c in st.channels.values())
        wait_until(lambda: client.handle is not None, what="GET /api/me")
        assert client.agent_id == srv.agents["alice"].id
        assert client.handle == srv.agents["alice"].handle
        assert st.channels["town-square"].online_count is not None
    assert client.status().channels["personal"].state == "closed"


def test_notifications_reach_the_reader(any_moltcities_server: LocalServer) -> None:
    srv = any_moltcities_server
    with client_for(srv, channels=("personal",)) as client:
        assert client.wait_connected(timeout=15)
        inbox(srv, text="one")
        inbox(srv, text="two")
        got = collect(client, 2)
        assert texts(got) == ["one", "two"]
        assert all(n.event_type == "inbox.message" for n in got)
        assert client.read_notifications().items == []


def test_town_square_chat_and_mentions_fire_once(
    any_moltcities_server: LocalServer,
) -> None:
    srv = any_moltcities_server
    seen: list[NotificationFrame] = []
    with client_for(srv, on_mention=seen.append) as alice:
        assert alice.wait_connected(timeout=15)
        wait_until(lambda: alice.agent_id is not None)
        post_as(srv, "bob", f"hello @{srv.agents['alice'].handle}!")
        wait_until(lambda: len(seen) == 1, what="mention callback")
        mention = seen[0]
        assert mention.event_type in MENTION_TYPES
        assert mention.sender_id == srv.agents["bob"].id

        chats: list[Any] = []

        def some_chat() -> bool:
            chats.extend(alice.read_town_square(kinds="chat").items)
            return bool(chats)

        wait_until(some_chat, what="chat")
        assert isinstance(chats[0], ChatFrame) and "hello @" in chats[0].text

        # Our own post mentioning someone else, and a post that isn't a mention: no callback.
        alice.post_chat(f"hi @{srv.agents['bob'].handle}")
        post_as(srv, "bob", "no mention here")
        post_as(srv, "bob", f"again @{srv.agents['alice'].handle}")
        wait_until(lambda: len(seen) == 2, what="second mention")
        assert [m.id for m in seen] == list(dict.fromkeys(m.id for m in seen))


def test_mention_callbacks_sync_async_raising_and_removed(
    moltcities_server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    srv = moltcities_server
    sync_threads: list[str] = []
    async_loops: list[str] = []
    removed_calls: list[str] = []

    def sync_cb(frame: NotificationFrame) -> None:
        sync_threads.append(threading.current_thread().name)

    async def async_cb(frame: NotificationFrame) -> None:
        asyncio.get_running_loop()  # awaited on a loop: the client's own
        async_loops.append(threading.current_thread().name)

    def broken(frame: NotificationFrame) -> None:
        raise RuntimeError("callback bug")

    def removed(frame: NotificationFrame) -> None:
        removed_calls.append(frame.id)

    with client_for(srv, channels=("personal",), on_mention=broken) as client:
        client.add_mention_listener(sync_cb)
        client.add_mention_listener(async_cb)
        client.add_mention_listener(removed)
        client.remove_mention_listener(removed)
        with pytest.raises(InvalidArgumentError):
            client.remove_mention_listener(removed)
        assert client.wait_connected(timeout=15)
        post_as(srv, "bob", f"ping @{srv.agents['alice'].handle}")
        wait_until(lambda: sync_threads and async_loops, what="both callbacks")
        assert sync_threads[0].startswith("moltcities-mention")
        assert async_loops[0] == "moltcities-client"
        wait_until(lambda: any("callback bug" in (r.exc_text or "") for r in caplog.records))
        assert client.status().channels["personal"].state == "connected"
        post_as(srv, "bob", f"more @{srv.agents['alice'].handle}")
        wait_until(lambda: len(sync_threads) == 2 and len(async_loops) == 2)
        assert removed_calls == []


# ---------------------------------------------------------------- faults


def test_abrupt_tcp_drop_reconnects_and_delivers(
    any_moltcities_server: LocalServer,
) -> None:
    srv = any_moltcities_server
    with client_for(srv) as client:
        assert client.wait_connected(timeout=15)
        srv.drop_all()
        wait_until(
            lambda: all(c.connect_count >= 2 for c in client.status().channels.values()),
            what="reconnect of both channels",
        )
        assert client.wait_connected(timeout=15)
        inbox(srv, text="after drop")
        assert texts(collect(client, 1)) == ["after drop"]


def test_server_restart_is_survived(any_moltcities_server: LocalServer) -> None:
    srv = any_moltcities_server
    with client_for(srv, channels=("personal",)) as client:
        assert client.wait_connected(timeout=15)
        srv.restart()
        wait_until(lambda: client.status().channels["personal"].connect_count >= 2)
        assert client.wait_connected(timeout=15)
        inbox(srv, text="after restart")
        assert texts(collect(client, 1)) == ["after restart"]


def test_server_down_then_up_again(moltcities_server: LocalServer) -> None:
    srv = moltcities_server
    with client_for(srv, channels=("personal",)) as client:
        assert client.wait_connected(timeout=15)
        srv.stop()
        wait_until(lambda: client.status().channels["personal"].state != "connected")
        srv.start()
        assert client.wait_connected(timeout=15)


def test_half_open_server_is_detected_and_left(any_moltcities_server: LocalServer) -> None:
    srv = any_moltcities_server
    settings = fast_settings(pong_timeout=1.0)
    with client_for(srv, channels=("personal",), settings=settings) as client:
        assert client.wait_connected(timeout=15)
        srv.freeze()
        try:
            wait_until(
                lambda: "half-open" in (client.status().channels["personal"].last_error or ""),
                what="half-open detection",
            )
        finally:
            srv.thaw()
        wait_until(lambda: client.status().channels["personal"].connect_count >= 2)
        assert client.wait_connected(timeout=15)
        inbox(srv, text="after thaw")
        assert texts(collect(client, 1)) == ["after thaw"]


def test_idle_close_4000_reconnects(any_moltcities_server: LocalServer) -> None:
    srv = any_moltcities_server
    with client_for(srv) as client:
        assert client.wait_connected(timeout=15)
        srv.disconnect_all(code=4000)
        wait_until(lambda: all(c.connect_count >= 2 for c in client.status().channels.values()))
        assert client.wait_connected(timeout=15)
        assert client.status().channels["personal"].last_close_code == 4000


@pytest.mark.parametrize("mode", ["documented", "live"])
def test_server_idle_timeout_closes_a_client_that_never_pings(
    mode: Literal["documented", "live"],
) -> None:
    # A client pinging less often than the server's idle timeout gets 4000, then comes back.
    with LocalServer(mode=mode, idle_timeout=0.3, idle_check_interval=0.05) as srv:
        settings = fast_settings(ping_interval=200, pong_timeout=200)
        with client_for(srv, channels=("personal",), settings=settings) as client:
            wait_until(lambda: client.status().channels["personal"].connect_count >= 2)
            assert client.status().channels["personal"].last_close_code == 4000
            assert client.wait_connected(timeout=15)


@pytest.mark.parametrize("mode", ["documented", "live"])
def test_pinging_client_is_never_idle_closed(mode: Literal["documented", "live"]) -> None:
    # The idle limit is 15 pings long, so a busy machine that delays a few pings is no idler.
    with LocalServer(mode=mode, idle_timeout=1.5, idle_check_interval=0.05) as srv:
        settings = fast_settings(ping_interval=0.1)
        with client_for(srv, channels=("personal", "town-square"), settings=settings) as c:
            assert c.wait_connected(timeout=15)
            # Answered pings spanning several idle timeouts (counted, not timed): with each
            # ping 0.1 s apart, 45 of them cover 4.5 s, three times the server's idle limit.
            wait_until(
                lambda: all(ch.pongs_received >= 45 for ch in c.status().channels.values()),
                what="45 answered pings on each channel",
            )
            for ch in c.status().channels.values():
                assert ch.connect_count == 1 and ch.last_close_code is None
                assert ch.state == "connected"


def test_displaced_4003_stops_and_says_so(any_moltcities_server: LocalServer) -> None:
    srv = any_moltcities_server
    with client_for(srv, channels=("personal",)) as first:
        assert first.wait_connected(timeout=15)
        with client_for(srv, channels=("personal",)) as second:
            assert second.wait_connected(timeout=15)
            wait_until(lambda: first.status().channels["personal"].state == "displaced")
            ch = first.status().channels["personal"]
            assert ch.last_close_code == 4003
            assert "another connection" in (ch.last_error or "")
            assert ch.connect_count == 1
            assert second.status().channels["personal"].state == "connected"
            assert first.wait_connected(timeout=0.5) is False


def test_acks_of_a_displaced_channel_still_reach_the_server(
    any_moltcities_server: LocalServer,
) -> None:
    # A displaced channel never reconnects, so its acks go over REST instead of a dead queue.
    # The live server names the item differently over REST (msg_...), so the check is by
    # text: the message must leave the server's unread list in either dialect.
    srv = any_moltcities_server
    with client_for(srv, channels=("personal",)) as first:
        assert first.wait_connected(timeout=15)
        inbox(srv, text="to ack while displaced")
        note = collect(first, 1)[0]
        with client_for(srv, channels=("personal",)) as second:
            wait_until(lambda: first.status().channels["personal"].state == "displaced")

            def unread_texts() -> list[str | None]:
                page = second.list_notifications(unread=True)
                return [n.to_notification().text for n in page.notifications]

            assert "to ack while displaced" in unread_texts()
            first.ack(note.id)
            assert first.status().channels["personal"].pending_acks == 0
            wait_until(
                lambda: "to ack while displaced" not in unread_texts(),
                what="the acked message to leave the server's unread list",
            )


def test_rejected_key_is_fatal_with_a_clear_error(any_moltcities_server: LocalServer) -> None:
    srv = any_moltcities_server
    bad = "mc_" + "0" * 64
    with MoltCitiesClient(api_key=bad, base_url=srv.base_url, settings=fast_settings()) as client:
        assert client.wait_connected(timeout=15) is False
        # wait_connected gives up as soon as one channel is terminal: wait for both.
        wait_until(
            lambda: all(c.state == "failed" for c in client.status().channels.values()),
            what="both channels to fail",
        )
        for ch in client.status().channels.values():
            assert ch.state == "failed"
            assert "API key" in (ch.last_error or "")
            assert bad not in (ch.last_error or "")


def test_handshakes_refused_with_5xx_are_retried(any_moltcities_server: LocalServer) -> None:
    srv = any_moltcities_server
    srv.refuse_handshakes(503)
    with client_for(srv, channels=("personal",)) as client:
        wait_until(lambda: "503" in (client.status().channels["personal"].last_error or ""))
        srv.refuse_handshakes(None)
        assert client.wait_connected(timeout=15)


# ---------------------------------------------------------------- delivery semantics


def test_overflow_keeps_the_newest_and_reports_the_drop(any_moltcities_server: LocalServer) -> None:
    srv = any_moltcities_server
    with client_for(srv, channels=("personal",), buffer_size=3) as client:
        assert client.wait_connected(timeout=15)
        for i in range(6):
            inbox(srv, text=f"n{i}")
        wait_until(lambda: client.status().channels["personal"].received == 6)
        result = client.read_notifications()
        assert texts(result.items) == ["n3", "n4", "n5"]
        assert result.dropped == 3 and result.remaining == 0
        assert client.status().channels["personal"].overflow_dropped == 3


def test_redelivered_notification_reaches_the_consumer_once(moltcities_server: LocalServer) -> None:
    srv = moltcities_server  # documented mode keeps unacked notifications and re-sends them
    with client_for(srv, channels=("personal",)) as client:
        assert client.wait_connected(timeout=15)
        inbox(srv, text="once")
        assert texts(collect(client, 1)) == ["once"]
        srv.drop_all()
        wait_until(lambda: client.status().channels["personal"].duplicates_dropped >= 1)
        assert client.read_notifications().items == []


def test_overflow_dropped_then_redelivered_is_delivered(moltcities_server: LocalServer) -> None:
    srv = moltcities_server
    with client_for(srv, channels=("personal",), buffer_size=2) as client:
        assert client.wait_connected(timeout=15)
        for i in range(3):
            inbox(srv, text=f"n{i}")
        wait_until(lambda: client.status().channels["personal"].received == 3)
        first = client.read_notifications()
        assert texts(first.items) == ["n1", "n2"] and first.dropped == 1
        srv.drop_all()  # unacked: all three come back with queued: true
        again = collect(client, 1)
        assert texts(again) == ["n0"] and again[0].queued


def test_acked_notifications_are_not_redelivered(moltcities_server: LocalServer) -> None:
    srv = moltcities_server
    with client_for(srv, channels=("personal",)) as client:
        assert client.wait_connected(timeout=15)
        inbox(srv, text="a")
        inbox(srv, text="b")
        got = collect(client, 2)
        client.ack([n.id for n in got])
        wait_until(
            lambda: client.list_notifications(unread=True).unread_count == 0, what="acks applied"
        )
        srv.drop_all()
        wait_until(lambda: client.status().channels["personal"].connect_count >= 2)
        inbox(srv, text="c")
        assert texts(collect(client, 1)) == ["c"]
        assert client.status().channels["personal"].duplicates_dropped == 0


def test_chat_missed_while_disconnected_is_backfilled(any_moltcities_server: LocalServer) -> None:
    srv = any_moltcities_server
    with client_for(srv, channels=("town-square",)) as client:
        assert client.wait_connected(timeout=15)
        post_as(srv, "bob", "before")
        wait_until(lambda: client.status().channels["town-square"].received == 1)
        srv.refuse_handshakes(503)
        srv.drop_all()
        wait_until(lambda: client.status().channels["town-square"].state != "connected")
        missed = [post_as(srv, "bob", f"missed {i}")["message"]["id"] for i in range(3)]
        srv.refuse_handshakes(None)
        wait_until(lambda: client.status().channels["town-square"].received == 4, what="backfill")
        items = [c for c in client.read_town_square(kinds="chat").items if isinstance(c, ChatFrame)]
        assert [c.text for c in items] == ["before", "missed 0", "missed 1", "missed 2"]
        assert [c.id for c in items[1:]] == missed
        post_as(srv, "bob", "live again")
        wait_until(lambda: client.status().channels["town-square"].received == 5)


def test_subscriptions_filter_and_survive_reconnects(moltcities_server: LocalServer) -> None:
    srv = moltcities_server
    with client_for(srv, channels=("personal",)) as client:
        assert client.wait_connected(timeout=15)
        assert client.set_subscriptions(["inbox.message"]) == ["inbox.message"]
        assert client.subscriptions == ["inbox.message"]
        with pytest.raises(InvalidArgumentError, match="valid ones"):
            client.set_subscriptions(["inbox.mesage"])
        srv.drop_all()
        wait_until(lambda: client.status().channels["personal"].connect_count >= 2)
        assert client.wait_connected(timeout=15)

        def server_side_filter() -> list[tuple[str, ...]]:
            # What the server's live session will filter by (the client's own view may still
            # be the previous connection's).
            sessions = srv._call(lambda: list(srv.state.sessions.values()))
            return [s.subscriptions for s in sessions if s.agent.handle == "alice"]

        wait_until(lambda: server_side_filter() == [("inbox.message",)])
        # Pushed in order on one socket: if the guestbook entry were delivered, it'd come first.
        srv.notify("alice", "guestbook.entry", {"entry_id": "g1", "message": "filtered"})
        inbox(srv, text="kept")
        got = collect(client, 1)
        assert texts(got) == ["kept"]


# ---------------------------------------------------------------- polling


def test_poll_transport_delivers_and_marks_read(moltcities_server: LocalServer) -> None:
    srv = moltcities_server
    with client_for(srv, channels=("personal",), transport="poll") as client:
        assert client.wait_connected(timeout=15)
        assert not any(srv.connections("alice").values())  # no WebSocket at all
        inbox(srv, text="polled")
        got = collect(client, 1)
        assert texts(got) == ["polled"] and got[0].event_type == "inbox.message"
        client.ack(got[0].id)
        assert client.list_notifications(unread=True).unread_count == 0
        inbox(srv, text="second")
        assert texts(collect(client, 1)) == ["second"]


def test_poll_transport_town_square(any_moltcities_server: LocalServer) -> None:
    srv = any_moltcities_server
    with client_for(srv, channels=("town-square",), transport="poll") as client:
        assert client.wait_connected(timeout=15)
        post_as(srv, "bob", "polled chat")
        got: list[Any] = []

        def some() -> bool:
            got.extend(client.read_town_square().items)
            return bool(got)

        wait_until(some, what="polled chat")
        assert got[0].text == "polled chat"


def test_falls_back_to_polling_when_websocket_is_refused(moltcities_server: LocalServer) -> None:
    srv = moltcities_server
    srv.refuse_handshakes(503)
    with client_for(srv, channels=("personal",)) as client:
        wait_until(lambda: client.status().channels["personal"].polling, what="fallback")
        inbox(srv, text="via fallback")
        assert texts(collect(client, 1)) == ["via fallback"]
        srv.refuse_handshakes(None)
        assert client.wait_connected(timeout=15)
        assert client.status().channels["personal"].polling is False


# ---------------------------------------------------------------- REST


def test_rest_calls_round_trip(any_moltcities_server: LocalServer) -> None:
    srv = any_moltcities_server
    with client_for(srv, channels=("personal",)) as client:
        me = client.me()
        assert me.agent.id == srv.agents["alice"].id
        posted = client.post_chat("  hello square  ")
        assert posted.text == "hello square" and posted.sender_id == me.agent.id
        history = client.chat_history(limit=50)
        assert posted.id in [c.id for c in history]
        assert client.chat_history(after=posted.created_at) == []
        with pytest.raises(InvalidArgumentError, match="500"):
            client.post_chat("x" * 501)
        with pytest.raises(InvalidArgumentError, match="empty"):
            client.post_chat("   ")


@pytest.mark.parametrize("mode", ["documented", "live"])
def test_rate_limit_carries_retry_after(mode: Literal["documented", "live"]) -> None:
    with LocalServer(mode=mode, chat_rate_limit=(2, 60.0)) as srv:
        with client_for(srv, channels=("personal",)) as client:
            client.post_chat("one")
            client.post_chat("two")
            with pytest.raises(RateLimitError) as err:
                client.post_chat("three")
            assert err.value.retry_after is not None and err.value.retry_after > 0
            assert "try again" in str(err.value)


def test_api_errors_carry_the_server_message(moltcities_server: LocalServer) -> None:
    srv = moltcities_server
    with client_for(srv, channels=("personal",)) as client:
        with pytest.raises(ApiError) as err:
            client.mark_read("notif_does_not_exist")
        assert err.value.status in (400, 404) and err.value.message


# ---------------------------------------------------------------- lifecycle & faces


def test_close_is_idempotent_and_leaves_no_thread(
    any_moltcities_server: LocalServer,
) -> None:
    srv = any_moltcities_server
    before = {t.ident for t in threading.enumerate()}
    client = client_for(srv, settings=fast_settings(close_timeout=0.1)).start()
    assert client.wait_connected(timeout=15)
    client.close()
    client.close()
    left = [t for t in threading.enumerate() if t.ident not in before and t.is_alive()]
    assert left == []
    assert client.status().closed
    with pytest.raises(NotConnectedError):
        client.post_chat("after close")
    with pytest.raises(NotConnectedError):
        client.start()


async def test_async_face_from_another_loop(any_moltcities_server: LocalServer) -> None:
    srv = any_moltcities_server
    async with client_for(srv) as client:
        assert await client.await_connected(timeout=15)
        posted = await client.apost_chat("from asyncio")
        me = await client.ame()
        assert posted.sender_id == me.agent.id
        history = await client.achat_history(limit=10)
        assert posted.id in [c.id for c in history]
        await asyncio.to_thread(inbox, srv, "alice", "listed over REST")
        page = await client.alist_notifications()
        listed = [n.to_notification() for n in page.notifications]
        assert "listed over REST" in [n.text for n in listed], listed
        events = ["inbox.message", "guestbook.entry"]
        assert await client.aset_subscriptions(events) == events
        assert client.subscriptions == events


async def test_sync_face_works_inside_a_running_loop(moltcities_server: LocalServer) -> None:
    # As in Jupyter: a loop is running in this thread and the caller uses the sync API.
    srv = moltcities_server
    client = client_for(srv, channels=("personal",))
    client.start()
    try:
        assert client.wait_connected(timeout=15)
        assert client.post_chat("sync inside a loop").text == "sync inside a loop"
        inbox(srv, text="seen")
        assert texts(collect(client, 1)) == ["seen"]
    finally:
        client.close()


def test_key_never_in_logs_reprs_or_errors(
    any_moltcities_server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    srv = any_moltcities_server
    key = srv.agents["alice"].api_key
    errors: list[str] = []
    with client_for(srv) as client:
        assert client.wait_connected(timeout=15)
        srv.drop_all()
        wait_until(lambda: client.wait_connected(timeout=0.05))
        try:
            client.post_chat("x" * 600)
        except InvalidArgumentError as exc:
            errors.append(str(exc))
        errors += [repr(client), str(client), client.status().model_dump_json()]
    with MoltCitiesClient(api_key=key, base_url=srv.base_url, channels=("personal",)) as c2:
        assert c2.wait_connected(timeout=15)
        srv.refuse_handshakes(401)
        srv.drop_all()
        wait_until(lambda: c2.status().channels["personal"].state == "failed")
        errors.append(c2.status().model_dump_json())
    ours = [
        r.getMessage()
        for r in caplog.records
        if not r.name.startswith(("langchain_moltcities.server", "uvicorn"))
    ]
    assert any("GET /api/notifications/connect" in m for m in ours), "websockets debug captured"
    assert [m for m in ours + errors if key in m or key[3:24] in m] == []
