"""Client behaviour against a scripted, sometimes hostile WebSocket peer (real sockets).

The local MoltCities server covers the protocol; this peer sends what no honest server
would: garbage, unknown types, oversized frames, silence.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from websockets.asyncio.server import ServerConnection

from conftest import PEER_KEY, PEER_LOGGER, Peer, answer_pings, eventually, fast_settings
from langchain_moltcities import InvalidArgumentError, MoltCitiesClient, MoltCitiesToolkit
from langchain_moltcities.protocol import ChatFrame, NotificationFrame


def notification(nid: str, event_type: str = "inbox.message", **data: object) -> str:
    return json.dumps(
        {"type": "notification", "id": nid, "event_type": event_type, "data": data or {"x": 1}}
    )


def make_client(peer: Peer, **kw: object) -> MoltCitiesClient:
    kw.setdefault("settings", fast_settings())
    return MoltCitiesClient(
        api_key=PEER_KEY,
        base_url=peer.url,
        channels=("personal",),
        **kw,  # type: ignore[arg-type]
    )


async def test_malformed_and_unknown_frames_are_counted_and_skipped(peer: Peer) -> None:
    async def hostile(ws: ServerConnection, n: int) -> None:
        await ws.send(json.dumps({"type": "connected", "agent_id": "agent_me"}))
        await ws.send("this is not json")
        await ws.send("[1, 2, 3]")
        await ws.send(json.dumps({"type": "notification", "event_type": "mention"}))  # no id
        await ws.send(b"\xff\xfe\x00binary")
        await ws.send(json.dumps({"type": "from.the.future", "payload": 1}))
        await ws.send(json.dumps({"type": "error", "code": 4009, "message": "Unknown type"}))
        await ws.send(notification("n1", preview="still here"))
        await answer_pings(ws, peer)

    peer.handler = hostile
    async with make_client(peer) as client:
        await eventually(lambda: client.status().channels["personal"].received == 1, what="n1")
        items = client.read_notifications().items
        assert [n.id for n in items] == ["n1"] and items[0].text == "still here"
        ch = client.status().channels["personal"]
        assert ch.invalid_frames == 4
        assert ch.unknown_frames == 1
        assert ch.state == "connected" and ch.connect_count == 1
        assert "4009" in (ch.last_error or "")
        assert client.agent_id == "agent_me"


async def test_oversized_frame_is_refused_and_the_client_recovers(peer: Peer) -> None:
    async def big_then_good(ws: ServerConnection, n: int) -> None:
        await ws.send(json.dumps({"type": "connected"}))
        if n == 1:
            await ws.send(notification("huge", preview="x" * 50_000))
        await ws.send(notification(f"ok{n}"))
        await answer_pings(ws, peer)

    peer.handler = big_then_good
    async with make_client(peer, settings=fast_settings(max_frame_size=4096)) as client:
        await eventually(lambda: client.status().channels["personal"].received >= 1, what="ok2")
        ids = [n.id for n in client.read_notifications().items]
        assert "huge" not in ids and "ok2" in ids
        ch = client.status().channels["personal"]
        assert ch.connect_count >= 2
        assert ch.oversized_frames == 1
        assert "max_frame_size" in (ch.last_error or "")


async def test_handshake_401_is_fatal_with_a_clear_error(peer: Peer) -> None:
    peer.reject_status = 401
    async with make_client(peer) as client:
        assert await client.await_connected(timeout=15) is False
        ch = client.status().channels["personal"]
        assert ch.state == "failed"
        assert "API key" in (ch.last_error or "") and "401" in (ch.last_error or "")
        attempts = peer.handshakes
    # Closing stopped everything; no retry storm happened while we looked.
    assert peer.handshakes == attempts
    assert attempts == 1


@pytest.mark.parametrize("status", [503, 429])
async def test_handshake_5xx_and_429_are_retried(peer: Peer, status: int) -> None:
    peer.reject_status = status
    async with make_client(peer) as client:
        await eventually(lambda: peer.handshakes >= 3, what="retries")
        assert client.status().channels["personal"].state in ("backing_off", "connecting")
        peer.reject_status = None
        assert await client.await_connected(timeout=15)


async def test_half_open_peer_is_detected_and_replaced(peer: Peer) -> None:
    async def silent_first(ws: ServerConnection, n: int) -> None:
        await ws.send(json.dumps({"type": "connected"}))
        if n == 1:
            # Reads (so TCP stays healthy) but never answers an app-level ping.
            async for msg in ws:
                peer.received.append(str(msg))
            return
        await ws.send(notification("after-reconnect"))
        await answer_pings(ws, peer)

    peer.handler = silent_first
    async with make_client(peer, settings=fast_settings(pong_timeout=1.0)) as client:
        await eventually(lambda: peer.connections >= 2, what="a second connection")
        await eventually(lambda: client.status().channels["personal"].received == 1)
        assert any(json.loads(m)["type"] == "ping" for m in peer.received)
        assert [n.id for n in client.read_notifications().items] == ["after-reconnect"]


async def test_abrupt_tcp_drop_reconnects(peer: Peer) -> None:
    async def drop_first(ws: ServerConnection, n: int) -> None:
        await ws.send(json.dumps({"type": "connected"}))
        if n == 1:
            ws.transport.abort()
            return
        await answer_pings(ws, peer)

    peer.handler = drop_first
    async with make_client(peer) as client:
        await eventually(lambda: client.status().channels["personal"].connect_count >= 2)
        assert await client.await_connected(timeout=15)
        assert client.status().channels["personal"].last_close_code == 1006


@pytest.mark.parametrize(("code", "state"), [(4003, "displaced"), (1000, "closed")])
async def test_close_codes_that_stop(peer: Peer, code: int, state: str) -> None:
    async def close_with(ws: ServerConnection, n: int) -> None:
        await ws.send(json.dumps({"type": "connected"}))
        await ws.close(code, "New connection opened" if code == 4003 else "bye")

    peer.handler = close_with
    async with make_client(peer) as client:
        await eventually(lambda: client.status().channels["personal"].state == state)
        ch = client.status().channels["personal"]
        assert ch.last_close_code == code and ch.connect_count == 1
        if code == 4003:
            assert "displaced" in (ch.last_error or "")
        assert await client.await_connected(timeout=1) is False
    assert peer.connections == 1


async def test_idle_close_4000_reconnects(peer: Peer) -> None:
    async def idle_close_first(ws: ServerConnection, n: int) -> None:
        await ws.send(json.dumps({"type": "connected"}))
        if n == 1:
            await ws.close(4000, "Connection timeout")
            return
        await answer_pings(ws, peer)

    peer.handler = idle_close_first
    async with make_client(peer) as client:
        await eventually(lambda: client.status().channels["personal"].connect_count == 2)
        assert await client.await_connected(timeout=15)
        assert client.status().channels["personal"].last_close_code == 4000


async def test_flapping_server_backs_off_instead_of_storming(peer: Peer) -> None:
    async def accept_and_close(ws: ServerConnection, n: int) -> None:
        await ws.close(4000, "go away")

    peer.handler = accept_and_close
    settings = fast_settings(backoff_base=0.01, backoff_cap=0.05, stable_after=60)
    async with make_client(peer, settings=settings) as client:
        await eventually(lambda: peer.connections >= 6, what="several attempts")
        # Accepted-then-closed connections never count as stable: the attempt count (and so
        # the delay) keeps growing instead of resetting after each short-lived connection.
        assert client.status().channels["personal"].retry_attempt >= 5


async def test_backoff_resets_after_a_stable_connection(peer: Peer) -> None:
    release = asyncio.Event()

    async def handler(ws: ServerConnection, n: int) -> None:
        await ws.send(json.dumps({"type": "connected"}))
        if n <= 3:
            await ws.close(4000, "flap")
            return
        if n == 4:
            await release.wait()  # stays up until the test saw it stable
            await ws.close(4000, "after a long stable time")
            return
        await answer_pings(ws, peer)

    peer.handler = handler
    settings = fast_settings(stable_after=0.05, backoff_base=0.01, backoff_cap=0.05)
    async with make_client(peer, settings=settings) as client:
        await eventually(lambda: peer.connections >= 4 and client.status().connected)
        assert client.status().channels["personal"].retry_attempt >= 3
        await asyncio.sleep(0.2)  # longer than stable_after: makes the 4th connection stable
        release.set()
        await eventually(lambda: peer.connections >= 5)
        assert client.status().channels["personal"].retry_attempt == 1


async def test_acks_sent_over_the_socket_and_queued_while_down(peer: Peer) -> None:
    gate = asyncio.Event()

    async def handler(ws: ServerConnection, n: int) -> None:
        await ws.send(json.dumps({"type": "connected"}))
        if n == 1:
            await gate.wait()
            ws.transport.abort()
            return
        await answer_pings(ws, peer)

    peer.handler = handler
    async with make_client(peer) as client:
        assert await client.await_connected()
        peer.handler = handler
        gate.set()
        await eventually(lambda: client.status().channels["personal"].state != "connected")
        await client.aack(["n1", "n2"])
        await eventually(lambda: client.status().channels["personal"].connect_count == 2)
        await eventually(
            lambda: sum(json.loads(m)["type"] == "ack" for m in peer.received) == 2, what="acks"
        )
        acked = [json.loads(m)["notification_id"] for m in peer.received if "ack" in m]
        assert acked == ["n1", "n2"]
        assert client.status().channels["personal"].pending_acks == 0


async def test_key_never_reaches_logs_even_at_debug(
    peer: Peer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    peer.reject_status = 503
    async with make_client(peer) as client:
        await eventually(lambda: peer.handshakes >= 2)
        peer.reject_status = None
        assert await client.await_connected()
        assert repr(client).find(PEER_KEY) == -1
        assert PEER_KEY not in client.status().model_dump_json()
    texts = [r.getMessage() for r in caplog.records if not r.name.startswith(PEER_LOGGER)]
    assert any("GET /api/notifications/connect" in t for t in texts), "websockets debug seen"
    leaked = [t for t in texts if PEER_KEY in t or PEER_KEY[3:20] in t]
    assert leaked == []


def chat(cid: str, at: str, text: str) -> dict[str, object]:
    return {"id": cid, "message": text, "created_at": at, "agent": {"id": "agent_bob"}}


async def test_town_square_gap_is_backfilled_after_a_reconnect(peer: Peer) -> None:
    asked: list[str] = []

    def history(path: str) -> dict[str, object]:
        # Like a server: only what was posted after the cursor (the outage is polled too).
        asked.append(path)
        after = parse_qs(urlsplit(path).query).get("after", [""])[0]
        posted = [
            chat("c2", "2026-02-01T10:00:02.000Z", "missed"),
            chat("c3", "2026-02-01T10:00:03.000Z", "also live"),
        ]
        return {"messages": [m for m in posted if str(m["created_at"]) > after]}

    async def handler(ws: ServerConnection, n: int) -> None:
        await ws.send(json.dumps({"type": "connected", "channel": "town-square"}))
        if n == 1:
            c1 = chat("c1", "2026-02-01T10:00:01.000Z", "seen live")
            await ws.send(json.dumps({"type": "chat", **c1, "agent_id": "agent_bob"}))
            # An abort discards what the client has not read yet: cut the link once it has.
            await eventually(lambda: client.status().channels["town-square"].received >= 1)
            ws.transport.abort()
            return
        c3 = chat("c3", "2026-02-01T10:00:03.000Z", "also live")
        await ws.send(json.dumps({"type": "chat", **c3, "agent_id": "agent_bob"}))
        await answer_pings(ws, peer)

    peer.handler = handler
    peer.http_routes["/api/chat"] = history
    async with MoltCitiesClient(
        api_key=PEER_KEY, base_url=peer.url, channels=("town-square",), settings=fast_settings()
    ) as client:
        seen: list[str] = []

        def three() -> bool:
            seen.extend(c.id for c in client.read_town_square().items if isinstance(c, ChatFrame))
            return len(seen) >= 3

        await eventually(three, what="three chats")
        assert seen == ["c1", "c2", "c3"]
        # Polled during the outage or back-filled after it, the missed chat is fetched once;
        # the live copy of c3 on the new link is then a duplicate.
        await eventually(
            lambda: client.status().channels["town-square"].duplicates_dropped == 1,
            what="the live c3 deduplicated",
        )
        ts = client.status().channels["town-square"]
        assert ts.backfilled == 2 and ts.connect_count == 2
        assert any(
            "after=2026-02-01T10%3A00%3A01.000Z" in p or "after=2026-02-01T10:00:01" in p
            for p in asked
        ), asked
        assert all(p.startswith("/api/chat?") and "token" not in p for p in asked)


async def test_poll_transport_reads_rest_notifications(peer: Peer) -> None:
    calls: list[str] = []

    def notifications(path: str) -> dict[str, object]:
        calls.append(path)
        items = [{"id": "msg_1", "type": "message", "read": False, "data": {"preview": "hi"}}]
        if len(calls) > 1:
            items.append({"id": "gb_2", "type": "guestbook", "read": False, "data": {}})
        return {"notifications": items, "unread_count": len(items)}

    peer.http_routes["/api/notifications"] = notifications
    async with make_client(peer, transport="poll") as client:
        assert await client.await_connected(timeout=15)
        await eventually(lambda: client.status().channels["personal"].received == 2)
        got = client.read_notifications()
        assert [(n.id, n.event_type) for n in got.items] == [
            ("msg_1", "inbox.message"),
            ("gb_2", "guestbook.entry"),
        ]
        assert client.status().channels["personal"].duplicates_dropped >= 1
        assert peer.handshakes == 0  # never tried a WebSocket


async def test_close_needs_no_close_reply_and_leaves_no_thread(peer: Peer) -> None:
    await asyncio.to_thread(lambda: None)  # this test loop's own worker thread exists first
    before = {t.ident for t in threading.enumerate()}
    client = make_client(peer, settings=fast_settings(close_timeout=0.1))
    await client.__aenter__()
    assert await client.await_connected()
    # A blocking close() on this loop: the peer (same loop) can't answer the close frame,
    # like the live server, which never does. close() must still return and clean up.
    client.close()
    client.close()
    # The test loop's own executor may have grown a worker ("asyncio_N") for the client's
    # to_thread calls on a busy machine: that pool belongs to the test, not to the client.
    left = [t for t in threading.enumerate() if t.ident not in before]
    assert [t for t in left if not t.name.startswith("asyncio_")] == []
    assert client.status().channels["personal"].state == "closed"
    await client.aclose()


async def test_subscriptions_are_confirmed_and_resent_after_reconnect(peer: Peer) -> None:
    subscribes: list[tuple[int, list[str]]] = []
    drop = asyncio.Event()

    async def handler(ws: ServerConnection, n: int) -> None:
        await ws.send(json.dumps({"type": "connected"}))

        async def serve() -> None:
            async for raw in ws:
                msg = json.loads(raw)
                if msg["type"] == "subscribe":
                    subscribes.append((n, msg["events"]))
                    await ws.send(json.dumps({"type": "subscribed", "events": msg["events"]}))
                elif msg["type"] == "ping":
                    await ws.send(json.dumps({"type": "pong"}))

        task = asyncio.create_task(serve())
        if n == 1:
            await drop.wait()
            task.cancel()
            ws.transport.abort()
            return
        await task

    peer.handler = handler
    async with make_client(peer) as client:
        assert await client.await_connected()
        assert await client.aset_subscriptions(["inbox.message", "mention"]) == [
            "inbox.message",
            "mention",
        ]
        assert client.subscriptions == ["inbox.message", "mention"]
        with pytest.raises(InvalidArgumentError, match="valid ones"):
            await client.aset_subscriptions(["inbox.mesage"])
        drop.set()
        await eventually(lambda: len(subscribes) == 2, what="re-sent subscription")
        assert subscribes == [(1, ["inbox.message", "mention"]), (2, ["inbox.message", "mention"])]


async def test_mentions_dispatch_once_never_for_own_and_survive_bad_callbacks(
    peer: Peer, caplog: pytest.LogCaptureFixture
) -> None:
    me = "agent_me"

    def mention(nid: str, author: str, kind: str = "mention.chat") -> str:
        return notification(nid, kind, author_id=author, message_preview=f"@me from {author}")

    release = asyncio.Event()

    async def handler(ws: ServerConnection, n: int) -> None:
        await ws.send(json.dumps({"type": "connected", "agent_id": me}))
        await release.wait()
        await ws.send(mention("m1", "agent_bob"))
        await ws.send(mention("m1", "agent_bob"))  # duplicate
        await ws.send(mention("m2", me))  # our own message
        await ws.send(notification("i1", "inbox.message"))  # not a mention
        await ws.send(
            notification("m3", "mention", by_agent_id="agent_carol", snippet="documented form")
        )
        await answer_pings(ws, peer)

    sync_calls: list[tuple[str, str]] = []
    async_calls: list[tuple[str, str]] = []

    def sync_cb(frame: NotificationFrame) -> None:
        sync_calls.append((frame.id, threading.current_thread().name))

    async def async_cb(frame: NotificationFrame) -> None:
        async_calls.append((frame.id, threading.current_thread().name))

    def broken(frame: NotificationFrame) -> None:
        raise RuntimeError("listener bug")

    peer.handler = handler
    async with make_client(peer, on_mention=broken) as client:
        client.add_mention_listener(sync_cb)
        client.add_mention_listener(async_cb)
        assert await client.await_connected()
        release.set()
        await eventually(lambda: len(sync_calls) == 2 and len(async_calls) == 2)
        assert [c[0] for c in sync_calls] == ["m1", "m3"]
        assert [c[0] for c in async_calls] == ["m1", "m3"]
        assert all(name.startswith("moltcities-mention") for _, name in sync_calls)
        assert all(name == "moltcities-client" for _, name in async_calls)
        await eventually(
            lambda: sum("listener bug" in (r.exc_text or "") for r in caplog.records) == 2
        )
        assert client.status().channels["personal"].state == "connected"
        client.remove_mention_listener(sync_cb)
        with pytest.raises(InvalidArgumentError):
            client.remove_mention_listener(sync_cb)
        # All five arrive in the buffer (own mentions too: they're data, just not triggers).
        ids = [n.id for n in client.read_notifications().items]
        assert ids == ["m1", "m2", "i1", "m3"]


async def test_failed_backfill_is_retried_and_the_gap_still_filled(peer: Peer) -> None:
    # The first history request after the reconnect is rate-limited. Meanwhile a newer chat
    # arrives live: it must not move the back-fill cursor past the message still missing.
    asked: list[str] = []

    def history(path: str) -> object:
        asked.append(path)
        if len(asked) == 1:
            return 429, {"error": "Slow down", "retry_after": 0.05}
        return {
            "messages": [
                chat("c2", "2026-02-01T10:00:02.000Z", "missed"),
                chat("c3", "2026-02-01T10:00:03.000Z", "live after reconnect"),
            ]
        }

    async def handler(ws: ServerConnection, n: int) -> None:
        await ws.send(json.dumps({"type": "connected", "channel": "town-square"}))
        if n == 1:
            c1 = chat("c1", "2026-02-01T10:00:01.000Z", "seen live")
            await ws.send(json.dumps({"type": "chat", **c1, "agent_id": "agent_bob"}))
            # An abort discards what the client has not read yet: cut the link once it has.
            await eventually(lambda: client.status().channels["town-square"].received >= 1)
            ws.transport.abort()
            return
        c3 = chat("c3", "2026-02-01T10:00:03.000Z", "live after reconnect")
        await ws.send(json.dumps({"type": "chat", **c3, "agent_id": "agent_bob"}))
        await answer_pings(ws, peer)

    peer.handler = handler
    peer.http_routes["/api/chat"] = history
    async with MoltCitiesClient(
        api_key=PEER_KEY, base_url=peer.url, channels=("town-square",), settings=fast_settings()
    ) as client:
        seen: list[str] = []

        def three() -> bool:
            seen.extend(c.id for c in client.read_town_square().items if isinstance(c, ChatFrame))
            return len(seen) >= 3

        await eventually(three, what="the missed chat, after a retried back-fill")
        assert sorted(seen) == ["c1", "c2", "c3"]
        await eventually(lambda: not client.status().channels["town-square"].backfill_pending)
        assert len(asked) == 2
        assert all("after=2026-02-01T10%3A00%3A01.000Z" in p for p in asked), asked
        assert "rate limit" in (client.status().channels["town-square"].last_error or "")


async def test_polling_honours_retry_after(peer: Peer) -> None:
    calls: list[float] = []
    wait = 0.4  # far above the backoff (0.02 s) and poll interval (0.1 s) of fast_settings

    def notifications(path: str) -> object:
        calls.append(time.monotonic())
        if len(calls) == 1:
            return 429, {"error": "Too many requests", "retry_after": wait}
        items = [{"id": "msg_1", "type": "message", "read": False, "data": {"preview": "hi"}}]
        return {"notifications": items, "unread_count": 1}

    peer.http_routes["/api/notifications"] = notifications
    async with make_client(peer, transport="poll") as client:
        assert await client.await_connected(timeout=15)
        await eventually(lambda: client.status().channels["personal"].received == 1)
        assert [n.id for n in client.read_notifications().items] == ["msg_1"]
    assert calls[1] - calls[0] >= wait  # the second poll waited out retry_after


async def test_confirmed_only_on_a_real_echo_and_the_client_filters_either_way(
    peer: Peer,
) -> None:
    # Issue 17 item 2: a peer that never answers subscribe must not be called "confirmed";
    # issue 10 item 5: a peer that echoes but filters nothing is filtered by the client.
    echo = asyncio.Event()

    async def handler(ws: ServerConnection, n: int) -> None:
        await ws.send(json.dumps({"type": "connected", "agent_id": "agent_me"}))
        async for raw in ws:
            msg = json.loads(raw)
            if msg["type"] == "subscribe" and echo.is_set():
                await ws.send(json.dumps({"type": "subscribed", "events": msg["events"]}))
                for i, kind in enumerate(("guestbook.entry", "mention.chat", "inbox.message")):
                    frame = {
                        "type": "notification",
                        "id": f"notif_{i}",
                        "event_type": kind,
                        "agent_id": "agent_me",
                        "data": {"message_id": f"m{i}", "author_id": "agent_bob"},
                    }
                    await ws.send(json.dumps(frame))
            elif msg["type"] == "ping":
                await ws.send(json.dumps({"type": "pong"}))

    peer.handler = handler
    async with make_client(peer, settings=fast_settings(request_timeout=0.3)) as client:
        assert await client.await_connected()
        tool = next(
            t for t in MoltCitiesToolkit(client=client).get_tools() if t.name == "set_subscriptions"
        )
        call = {"name": tool.name, "args": {"events": ["mention"]}, "id": "1", "type": "tool_call"}
        silent = await tool.ainvoke(call)
        assert silent.artifact["confirmed"] is False
        assert "Not confirmed by the server" in str(silent.content)
        assert "did not answer in time" in str(silent.content)
        echo.set()
        echoed = await tool.ainvoke(call)
        assert echoed.artifact["confirmed"] is True
        assert "confirmed by the server" in str(echoed.content)
        await eventually(
            lambda: client.status().channels["personal"].filtered_out == 2, what="the filter"
        )
        got = client.read_notifications()
        assert [n.event_type for n in got.items] == ["mention.chat"]  # 'mention' covers it
        assert client.subscription_status().server_filters is False
        again = await tool.ainvoke(call)
        assert "the server echoed it but does not filter" in str(again.content)
