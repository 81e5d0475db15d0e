"""Buffers bounded in bytes: frames held as their JSON, long texts cut with a note, counted.

Unit tests of the pure pieces (FrameCodec, DeliveryBuffer with a codec), then the client over
real sockets against the local server.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from conftest import fast_settings, wait_until
from langchain_moltcities import ClientSettings, MoltCitiesClient
from langchain_moltcities.delivery import DeliveryBuffer
from langchain_moltcities.holding import FrameCodec
from langchain_moltcities.protocol import (
    ChatFrame,
    NotificationFrame,
    PresenceFrame,
    RestNotification,
    parse_frame,
)
from langchain_moltcities.server import LocalServer

KB = 1024


def note_frame(i: int, preview: str = "hi", **data: Any) -> bytes:
    return json.dumps(
        {
            "type": "notification",
            "id": f"n{i}",
            "event_type": "inbox.message",
            "created_at": "2026-02-01T21:30:00.000Z",
            "data": {"message_id": f"m{i}", "preview": preview, **data},
        }
    ).encode()


def buffer(capacity: int = 100, max_bytes: int | None = None, item: int = 4 * KB) -> Any:
    codec: FrameCodec[NotificationFrame] = FrameCodec((NotificationFrame,), item)
    buf: DeliveryBuffer[NotificationFrame] = DeliveryBuffer(
        capacity, codec=codec, max_bytes=max_bytes
    )
    return buf


def offer(buf: Any, raw: bytes | None, frame: NotificationFrame | None = None) -> bool:
    parsed = frame or parse_frame(raw or b"")
    assert isinstance(parsed, NotificationFrame)
    fresh: bool = buf.offer(parsed, item_id=parsed.id, kind=parsed.event_type, raw=raw)
    return fresh


# ---------------------------------------------------------------------- pure pieces


def test_held_frames_read_back_equal_in_order_and_deduplicated() -> None:
    buf = buffer()
    raws = [note_frame(i, f"text {i}") for i in range(5)]
    assert [offer(buf, r) for r in raws] == [True] * 5
    assert offer(buf, raws[2]) is False  # a redelivery: still deduplicated
    c = buf.counters()
    assert (c.received, c.duplicates_dropped, c.pending) == (5, 1, 5)
    assert c.held_bytes == sum(map(len, raws))
    got = buf.read().items
    assert got == [parse_frame(r) for r in raws]
    assert [n.text for n in got] == [f"text {i}" for i in range(5)]
    assert buf.counters().held_bytes == 0


def test_a_long_text_is_cut_in_memory_with_a_note_and_its_length_kept() -> None:
    buf = buffer(item=4 * KB)
    long_text = "x" * 100_000
    raw = note_frame(1, long_text, subject="short subject")
    assert offer(buf, raw)
    c = buf.counters()
    assert c.truncated == 1 and c.held_bytes <= 4 * KB
    (item,) = buf.read().items
    assert item.id == "n1" and item.event_type == "inbox.message"
    assert item.data["subject"] == "short subject"  # short texts untouched
    assert item.text is not None
    assert item.text.startswith("x" * 500)
    assert item.text.endswith("[cut in memory: 100,000 characters in all]")
    assert len(item.text) < 4 * KB


def test_a_frame_of_many_small_pieces_still_fits() -> None:
    buf = buffer(item=2 * KB)
    raw = note_frame(1, "hello", tags=["t"] * 5_000, extra={f"k{i}": i for i in range(3_000)})
    assert offer(buf, raw)
    (item,) = buf.read().items
    assert buf.counters().truncated == 1
    assert item.id == "n1" and item.data["preview"] == "hello"
    assert "5,000 items" in json.dumps(item.data["tags"])
    assert "3,000 keys" in json.dumps(item.data["extra"])


def test_frames_that_came_without_bytes_are_held_too() -> None:
    # A REST poll hands the buffer models, not socket bytes.
    rest = RestNotification.model_validate(
        {"id": "msg_1", "type": "inbox.message", "data": {"body": "y" * 50_000}}
    )
    frame = rest.to_notification()
    buf = buffer(item=4 * KB)
    assert offer(buf, None, frame)
    (item,) = buf.read().items
    assert item.id == frame.id and item.queued
    assert item.data["body"].endswith("[cut in memory: 50,000 characters in all]")
    assert buf.counters().truncated == 1


def test_the_byte_bound_drops_the_oldest_and_counts_them() -> None:
    raws = [note_frame(i, "p" * 900) for i in range(10)]
    size = len(raws[0])
    buf = buffer(capacity=100, max_bytes=4 * KB, item=2 * KB)
    for r in raws:
        offer(buf, r)
    kept = (4 * KB) // size
    c = buf.counters()
    assert c.pending == kept and c.held_bytes <= 4 * KB
    assert c.overflow_dropped == 10 - kept
    result = buf.read()
    assert [n.id for n in result.items] == [f"n{i}" for i in range(10 - kept, 10)]
    assert result.dropped == 10 - kept
    # A dropped item's id is forgotten: when the server re-sends it, it is delivered.
    assert offer(buf, raws[0]) is True


def test_town_square_codec_keeps_chat_and_presence_apart() -> None:
    codec: FrameCodec[ChatFrame | PresenceFrame] = FrameCodec((ChatFrame, PresenceFrame), 4 * KB)
    chat = ChatFrame(id="c1", message="hi", agent_handle="bob")
    presence = PresenceFrame(event="joined", online_count=3)
    assert codec.unpack(codec.pack(chat, None)[0]) == chat
    assert codec.unpack(codec.pack(presence, None)[0]) == presence
    with pytest.raises(ValueError, match="did not parse back"):
        codec.unpack(note_frame(1))


def test_settings_refuse_a_byte_bound_smaller_than_one_item() -> None:
    with pytest.raises(ValidationError, match="buffer_max_bytes"):
        ClientSettings(buffer_max_bytes=2 * KB, max_item_bytes=4 * KB)


# ---------------------------------------------------------------------- over real sockets


def client_for(srv: LocalServer, **settings: Any) -> MoltCitiesClient:
    return MoltCitiesClient(
        api_key=srv.agents["alice"].api_key,
        base_url=srv.base_url,
        channels=("personal",),
        settings=fast_settings(**settings),
    )


def test_a_huge_notification_is_held_cut_and_readable(any_moltcities_server: LocalServer) -> None:
    srv = any_moltcities_server
    with client_for(srv, max_item_bytes=8 * KB, buffer_max_bytes=64 * KB) as client:
        assert client.wait_connected(15)
        srv.notify("alice", "inbox.message", {"message_id": "big", "preview": "z" * 300_000})
        wait_until(lambda: client.status().channels["personal"].pending == 1, what="the item")
        st = client.status().channels["personal"]
        assert st.truncated == 1 and st.held_bytes <= 8 * KB
        (item,) = client.read_notifications().items
        assert item.text is not None
        assert item.text.endswith("[cut in memory: 300,000 characters in all]")


def test_the_byte_bound_holds_over_sockets(any_moltcities_server: LocalServer) -> None:
    srv = any_moltcities_server
    with client_for(srv, max_item_bytes=2 * KB, buffer_max_bytes=8 * KB) as client:
        assert client.wait_connected(15)
        for i in range(20):
            srv.notify("alice", "inbox.message", {"message_id": f"m{i}", "preview": "q" * 1500})

        def all_accounted() -> bool:
            st = client.status().channels["personal"]
            return st.received == 20

        wait_until(all_accounted, what="20 notifications received")
        st = client.status().channels["personal"]
        assert st.held_bytes <= 8 * KB
        assert st.pending + st.overflow_dropped == 20 and st.overflow_dropped > 0
        result = client.read_notifications()
        assert result.dropped == st.overflow_dropped
        assert [n.data["message_id"] for n in result.items] == [
            f"m{i}" for i in range(20 - st.pending, 20)
        ]
