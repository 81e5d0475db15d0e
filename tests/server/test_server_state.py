"""The pure server rules (no sockets), with a controllable clock."""

from __future__ import annotations

import pytest

from langchain_moltcities.server.faults import CloseFrameScanner
from langchain_moltcities.server.state import ApiError, Close, Send, ServerState


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_limit_window_slides() -> None:
    clock = Clock()
    state = ServerState(chat_rate_limit=(2, 10.0), clock=clock)
    alice = state.register_agent("alice")
    state.post_chat(alice, "a")
    clock.now += 4
    state.post_chat(alice, "b")
    with pytest.raises(ApiError) as err:
        state.post_chat(alice, "c")
    assert (err.value.status, err.value.body["retry_after"]) == (429, 6)
    clock.now += 6
    state.post_chat(alice, "c")  # the first one left the window


def test_idle_check_closes_only_connections_without_recent_ping() -> None:
    clock = Clock()
    state = ServerState(idle_timeout=300, clock=clock)
    alice, bob = state.register_agent("alice"), state.register_agent("bob")
    a, _ = state.open_session(alice, "personal")
    b, _ = state.open_session(bob, "town-square")
    clock.now += 200
    state.receive(a, '{"type": "ping"}')
    state.receive(b, '{"type": "subscribe", "events": []}')  # only ping counts
    clock.now += 100
    assert state.check_idle() == [Close(b, 4000, "Connection timeout")]
    clock.now += 200
    assert state.check_idle() == [Close(a, 4000, "Connection timeout")]


def test_timestamps_strictly_increase() -> None:
    state = ServerState()
    stamps = [state.now() for _ in range(50)]
    assert stamps == sorted(set(stamps))


def test_register_agent_rejects_bad_or_duplicate_handles() -> None:
    state = ServerState()
    state.register_agent("alice")
    with pytest.raises(ValueError, match="already exists"):
        state.register_agent("ALICE")
    with pytest.raises(ValueError, match="invalid handle"):
        state.register_agent("no spaces")


def test_api_keys_and_ids_have_the_expected_form() -> None:
    agent = ServerState().register_agent("alice")
    assert agent.api_key.startswith("mc_")
    assert len(agent.api_key) == 67
    int(agent.api_key[3:], 16)
    assert agent.id.startswith("agent_")
    assert agent.api_key not in repr(agent)


def test_documented_unsubscribed_push_is_kept_for_later() -> None:
    state = ServerState()
    alice = state.register_agent("alice")
    conn, _ = state.open_session(alice, "personal")
    state.receive(conn, '{"type": "subscribe", "events": ["mention"]}')
    assert state.notify("alice", "inbox.message", {}) == []
    state.close_session(conn)
    _, effects = state.open_session(alice, "personal")
    frames = [e.frame for e in effects if isinstance(e, Send)]
    assert [f["type"] for f in frames] == ["connected", "notification"]
    assert frames[1]["queued"] is True


def test_close_frame_scanner_finds_close_after_other_frames() -> None:
    def frame(opcode: int, payload: bytes) -> bytes:
        n = len(payload)
        if n < 126:
            head = bytes([0x80 | opcode, 0x80 | n])
        else:
            head = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
        return head + b"\0\0\0\0" + payload

    stream = frame(1, b"x" * 300) + frame(9, b"") + frame(8, b"\x03\xe8")
    scanner = CloseFrameScanner()
    # fed a byte at a time, it only fires at the close frame
    results = [scanner.feed(stream[i : i + 1]) for i in range(len(stream))]
    assert results.index(True) == len(frame(1, b"x" * 300) + frame(9, b"")) + 5


def test_the_delivery_journal_records_how_each_session_ended_and_what_was_flushed() -> None:
    # tests/reliability/chaos.py explains every live loss from this journal.
    state = ServerState(mode="live")
    alice = state.register_agent("alice")
    first, _ = state.open_session(alice, "personal")
    second, effects = state.open_session(alice, "personal")  # displaces the first
    assert Close(first, 4003, "New connection opened") in effects
    assert state.session_ends == {first: "displaced"}
    state.close_session(second)
    assert state.session_ends[second] == "gone"
    state.notify("alice", "inbox.message", {"preview": "while away"})
    third, _ = state.open_session(alice, "personal")
    (queued,) = state.notifications[alice.id]
    assert queued.flushed and queued.sent_to == [third]
    state.notify("alice", "inbox.message", {"preview": "live"})
    pushed = state.notifications[alice.id][1]
    assert not pushed.flushed and pushed.sent_to == [third]
