"""Unit tests of the pure delivery buffer: cursor, dedupe, overflow, filters, threads."""

from __future__ import annotations

import logging
import threading

import pytest

from langchain_moltcities.delivery import DeliveryBuffer, RecentIds


def fill(buf: DeliveryBuffer[str], *ids: str, kind: str = "k") -> list[bool]:
    return [buf.offer(f"item-{i}", item_id=i, kind=kind) for i in ids]


def test_reads_oldest_first_and_each_item_once() -> None:
    buf: DeliveryBuffer[str] = DeliveryBuffer(10)
    fill(buf, "a", "b", "c")
    first = buf.read(limit=2)
    assert first.items == ["item-a", "item-b"]
    assert first.remaining == 1
    second = buf.read()
    assert second.items == ["item-c"] and second.remaining == 0
    assert buf.read().items == []


def test_duplicate_ids_reach_the_consumer_once() -> None:
    buf: DeliveryBuffer[str] = DeliveryBuffer(10)
    assert fill(buf, "a", "a") == [True, False]
    buf.read()
    # Redelivered after being read (e.g. queued: true after a reconnect): still a duplicate.
    assert fill(buf, "a") == [False]
    c = buf.counters()
    assert (c.received, c.duplicates_dropped, c.pending) == (1, 2, 0)


def test_items_without_id_are_always_kept() -> None:
    buf: DeliveryBuffer[str] = DeliveryBuffer(10)
    buf.offer("x", item_id=None, kind="presence")
    buf.offer("x", item_id=None, kind="presence")
    assert buf.read().items == ["x", "x"]


def test_overflow_drops_oldest_counts_and_reports_once_per_read() -> None:
    buf: DeliveryBuffer[str] = DeliveryBuffer(3)
    fill(buf, "a", "b", "c", "d", "e")
    result = buf.read()
    assert result.items == ["item-c", "item-d", "item-e"]
    assert result.dropped == 2
    assert buf.read().dropped == 0
    assert buf.counters().overflow_dropped == 2


def test_an_item_dropped_unread_is_delivered_when_it_comes_back() -> None:
    buf: DeliveryBuffer[str] = DeliveryBuffer(2)
    fill(buf, "a", "b", "c")  # "a" dropped unread
    assert buf.read().items == ["item-b", "item-c"]
    assert fill(buf, "a", "b") == [True, False]
    assert buf.read().items == ["item-a"]


def test_overflow_is_logged_once_per_episode(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="langchain_moltcities")
    buf: DeliveryBuffer[str] = DeliveryBuffer(2, name="notifications")
    fill(buf, *"abcdefg")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "notifications" in warnings[0].getMessage()
    buf.read()
    fill(buf, *"hijk")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2


def test_filter_by_kind_leaves_other_kinds_unread() -> None:
    buf: DeliveryBuffer[str] = DeliveryBuffer(10)
    buf.offer("m1", item_id="1", kind="mention")
    buf.offer("i1", item_id="2", kind="inbox.message")
    buf.offer("m2", item_id="3", kind="mention")
    got = buf.read(kinds=["mention"])
    # "remaining" counts what the same read would return: no more mentions, though i1 waits.
    assert got.items == ["m1", "m2"] and got.remaining == 0
    assert buf.pending() == 1
    assert buf.read().items == ["i1"]


def test_remaining_counts_only_the_kinds_asked_for() -> None:
    buf: DeliveryBuffer[str] = DeliveryBuffer(10)
    for i in range(3):
        buf.offer(f"i{i}", item_id=f"i{i}", kind="inbox.message")
        buf.offer(f"m{i}", item_id=f"m{i}", kind="mention")
    got = buf.read(limit=1, kinds=["mention"])
    assert got.items == ["m0"] and got.remaining == 2
    everything = buf.read(limit=1)
    assert everything.items == ["i0"] and everything.remaining == 4  # m1, m2, i1, i2


def test_limit_zero_reads_nothing_and_negative_is_refused() -> None:
    buf: DeliveryBuffer[str] = DeliveryBuffer(10)
    fill(buf, "a")
    assert buf.read(limit=0).items == [] and buf.pending() == 1
    with pytest.raises(ValueError):
        buf.read(limit=-1)


def test_dedupe_memory_is_bounded() -> None:
    ids = RecentIds(3)
    for i in "abcd":
        ids.add(i)
    assert "a" not in ids and "d" in ids and len(ids) == 3


def test_concurrent_writers_and_readers_lose_nothing() -> None:
    buf: DeliveryBuffer[int] = DeliveryBuffer(100_000)
    got: list[int] = []
    done = threading.Event()

    def writer(start: int) -> None:
        for i in range(start, start + 2000):
            buf.offer(i, item_id=str(i), kind="k")
            buf.offer(i, item_id=str(i), kind="k")  # duplicate

    def reader() -> None:
        while not done.is_set() or buf.pending():
            got.extend(buf.read(limit=50).items)

    r = threading.Thread(target=reader)
    r.start()
    writers = [threading.Thread(target=writer, args=(n * 2000,)) for n in range(4)]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    done.set()
    r.join()
    assert sorted(got) == list(range(8000))
    assert buf.counters().duplicates_dropped == 8000


def test_an_alias_makes_the_same_item_under_another_id_a_duplicate() -> None:
    buf: DeliveryBuffer[str] = DeliveryBuffer(2)
    assert buf.offer("socket copy", item_id="notif_1", kind="inbox.message", aliases=("msg_1",))
    assert not buf.offer("polled copy", item_id="msg_1", kind="inbox.message")
    assert buf.offer("other", item_id="notif_2", kind="inbox.message")
    assert buf.offer("third", item_id="notif_3", kind="inbox.message")  # overflow drops notif_1
    # Dropped unread, so both its ids are forgotten: a redelivery under either is delivered.
    assert buf.offer("polled again", item_id="msg_1", kind="inbox.message")
    assert buf.counters().duplicates_dropped == 1
