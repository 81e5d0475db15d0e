"""The responder's restart rules on their own (pure: a MemoryStore and a fake clock)."""

from __future__ import annotations

from langchain_moltcities.mentions import Mention, MentionGuard
from langchain_moltcities.protocol import ChatFrame, NotificationFrame
from langchain_moltcities.state import MemoryStore
from langchain_moltcities.state.responder_state import ResponderStateKeeper


def _mention(i: int, at: str, received_at: float = 0.0) -> Mention:
    frame = NotificationFrame(
        id=f"notif_{i}",
        event_type="mention",
        created_at=at,
        data={"message_id": f"chat_{i}", "by_agent_id": f"agent_b{i}", "by_handle": f"b{i}"},
    )
    return Mention.from_frame(frame, received_at)


def _chat(who: str, at: str) -> ChatFrame:
    return ChatFrame(id=f"c_{who}_{at}", agent_id=who, message="@b1 hi", created_at=at)


def _keeper(store: MemoryStore, clock: list[float]) -> ResponderStateKeeper:
    guard = MentionGuard(cooldown=10.0, max_turns=2, window=60.0, clock=lambda: clock[0])
    return ResponderStateKeeper(store.agent("me"), guard, lambda: clock[0])


def test_a_turn_cut_short_after_its_reply_is_done_before_it_is_run_again() -> None:
    store, clock = MemoryStore(), [100.0]
    k = _keeper(store, clock)
    m = _mention(1, "2026-01-01T10:00:01.000Z")
    assert m.frame is not None
    k.received(m.frame)
    k.turn_started([m], last_post_at="2026-01-01T10:00:00.000Z")
    # "crash": a new keeper on the same store
    k2 = _keeper(store, clock)
    turn = k2.unfinished_turn()
    assert turn is not None
    # An own message before the mention is an older reply, another agent's is not ours.
    older = [_chat("me_id", "2026-01-01T10:00:00.500Z"), _chat("other", "2026-01-01T10:00:02Z")]
    assert k2.settle_turn(turn, older, {"me_id"}) is False
    assert [f.id for f in k2.inbox()] == ["notif_1"]  # offered again
    k2.turn_started([m], last_post_at="2026-01-01T10:00:00.000Z")
    k3 = _keeper(store, clock)
    turn = k3.unfinished_turn()
    assert turn is not None
    assert k3.settle_turn(turn, [_chat("me_id", "2026-01-01T10:00:03Z")], {"me_id"}) is True
    assert k3.inbox() == [] and k3.unfinished_turn() is None
    # Done under both names: the server's notification and the chat message it points at.
    recovered = NotificationFrame(
        id="chat:chat_1", event_type="mention.chat", data={"message_id": "chat_1"}
    )
    assert k3.is_done(m.frame) and k3.is_done(recovered)


def test_guard_windows_and_cooldowns_move_to_the_new_clock() -> None:
    store, clock = MemoryStore(), [1000.0]
    k = _keeper(store, clock)
    # Received now (a mention older than the guard's max_wait would be dropped as stale).
    a, b = _mention(1, "2026-01-01T10:00:01Z", 1000.0), _mention(2, "2026-01-01T10:00:02Z", 1000.0)
    for m in (a, b):
        assert k.guard.offer(m) == "queued"
        batch, _ = k.guard.next_turn()
        k.turn_started(batch, None)
        k.guard.turn_done(1)
        k.turn_finished(batch)
    # A new process whose monotonic clock starts elsewhere: the windows follow wall time.
    clock[0] = 5.0
    k2 = _keeper(store, clock)
    k2.restore_guard()
    c = _mention(3, "2026-01-01T10:00:03Z", 5.0)
    assert k2.guard.offer(c) == "deferred"  # two turns in the last 60 s already: it waits
    # The second author, answered 0 s ago on the old clock: still inside the 10 s cooldown
    # (checked before the cap).
    again = Mention("notif_9", "agent_b2", "b2", 5.0, None)
    assert k2.guard.offer(again) == "cooldown"
    assert k2.guard.offer(a) == "duplicate"  # handled before the restart


def test_a_reply_found_on_settling_is_not_taken_for_the_next_turns_reply() -> None:
    """Run 1 replied and was killed before saving its post's time; run 2 settled that turn,
    started the next one and was killed in it; run 3 must run that next turn again, not take
    run 1's reply (newer than the next turn's mentions) for its answer."""
    store, clock = MemoryStore(), [100.0]
    k = _keeper(store, clock)
    first, late = _mention(1, "2026-01-01T10:00:01Z"), _mention(2, "2026-01-01T10:00:02Z")
    k.turn_started([first], last_post_at=None)
    reply = _chat("me_id", "2026-01-01T10:00:05.000Z")  # posted, then the kill
    k2 = _keeper(store, clock)
    turn = k2.unfinished_turn()
    assert turn is not None and k2.settle_turn(turn, [reply], {"me_id"}) is True
    assert late.frame is not None
    k2.received(late.frame)
    k2.turn_started([late], last_post_at="2026-01-01T10:00:00Z")  # the client's stale time
    k3 = _keeper(store, clock)
    turn = k3.unfinished_turn()
    assert turn is not None
    assert k3.settle_turn(turn, [reply], {"me_id"}) is False
    assert [f.id for f in k3.inbox()] == ["notif_2"]
