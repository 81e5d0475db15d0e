"""The mention guard's rules, without sockets, on a hand-driven clock."""

from __future__ import annotations

import pytest

from langchain_moltcities.mentions import Mention, MentionGuard
from langchain_moltcities.protocol import ChatFrame, NotificationFrame
from langchain_moltcities.recovered import chat_key, mention_from_chat


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def mention(i: int, author: str = "bob") -> Mention:
    return Mention(id=f"n{i}", author_id=f"id-{author}", author_handle=author, received_at=1000.0)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def guard(clock: Clock, **kw: float) -> MentionGuard:
    args: dict[str, float] = {"cooldown": 10.0, "max_turns": 3, "window": 60.0}
    args.update(kw)
    return MentionGuard(
        own_ids=lambda: {"id-alice", "alice"},
        cooldown=args["cooldown"],
        max_turns=int(args["max_turns"]),
        window=args["window"],
        clock=clock,
    )


def test_own_mentions_and_repeats_never_start_a_turn(clock: Clock) -> None:
    g = guard(clock)
    assert g.offer(mention(1, "alice")) == "own"
    assert g.offer(Mention("n2", None, "alice", 0.0)) == "own"  # live: handle only
    assert g.offer(mention(3)) == "queued"
    assert g.offer(mention(3)) == "duplicate"
    batch, skipped = g.next_turn()
    assert [m.id for m in batch] == ["n3"] and skipped == []


def test_a_server_mention_and_its_recovered_twin_are_one_mention(clock: Clock) -> None:
    """A restart offers the mention recovered from chat (state inbox) and the documented
    server redelivers its notification of the same chat message: answering both answered
    one mention twice (found by tests/state/test_responder_restart.py's cap test)."""
    chat = ChatFrame(id="chat_1", agent_id="id-bob", agent_handle="bob", message="@alice hi")
    twin = mention_from_chat(chat, own_handle="alice", own_id="id-alice", event_type="mention")
    assert twin is not None
    server = NotificationFrame(
        id="notif_1",
        event_type="mention",
        data={"message_id": "chat_1", "author_id": "id-bob", "by_handle": "bob"},
    )
    for first, second in ((twin, server), (server, twin)):
        g = guard(clock)
        assert g.offer(Mention.from_frame(first, clock.now)) == "queued"
        assert g.offer(Mention.from_frame(second, clock.now)) == "duplicate"
        batch, _ = g.next_turn()
        assert [m.id for m in batch] == [first.id]
    g = guard(clock)
    g.remember(chat_key("chat_1"))  # handled before a restart, under the chat message's key
    assert g.offer(Mention.from_frame(server, clock.now)) == "duplicate"


def test_mentions_while_busy_become_one_next_turn(clock: Clock) -> None:
    g = guard(clock)
    g.offer(mention(1, "bob"))
    first, _ = g.next_turn()
    assert [m.id for m in first] == ["n1"] and g.busy
    for i, who in ((2, "carol"), (3, "dave"), (4, "erin")):
        assert g.offer(mention(i, who)) == "queued"
    assert g.next_turn() == ([], [])  # one turn at a time
    g.turn_done()
    second, _ = g.next_turn()
    assert [m.id for m in second] == ["n2", "n3", "n4"]
    assert g.next_turn() == ([], [])


def test_cooldown_per_author_runs_from_the_end_of_the_turn(clock: Clock) -> None:
    g = guard(clock, cooldown=10.0)
    g.offer(mention(1, "bob"))
    g.next_turn()
    clock.now += 8  # a slow turn
    assert g.offer(mention(2, "bob")) == "cooldown"  # bob is being answered right now
    assert g.offer(mention(3, "carol")) == "queued"
    g.turn_done()
    clock.now += 9.9
    assert g.offer(mention(4, "bob")) == "cooldown"
    clock.now += 0.2
    assert g.offer(mention(5, "bob")) == "queued"


def test_queued_mention_from_the_author_just_answered_is_skipped(clock: Clock) -> None:
    g = guard(clock, cooldown=10.0)
    g.offer(mention(1, "bob"))
    g.offer(mention(2, "carol"))
    g.next_turn()  # answers bob and carol
    g.turn_done()
    clock.now += 20
    g.offer(mention(3, "dave"))
    batch, skipped = g.next_turn()
    assert [m.id for m in batch] == ["n3"] and skipped == []


def test_turn_cap_per_window_stops_a_bot_loop(clock: Clock) -> None:
    g = guard(clock, cooldown=0.0, max_turns=3, window=60.0)
    turns = 0
    for i in range(10):  # a bot that mentions us back after every reply
        verdict = g.offer(mention(i, "echo-bot"))
        if verdict == "queued":
            batch, _ = g.next_turn()
            turns += bool(batch)
            g.turn_done()
        clock.now += 1
    assert turns == 3
    clock.now += 60  # the window has moved on
    assert g.offer(mention(99, "echo-bot")) == "queued"


def test_a_mention_over_the_cap_waits_for_the_window(clock: Clock) -> None:
    g = guard(clock, cooldown=0.0, max_turns=1, window=60.0)
    g.offer(mention(1, "bob"))
    g.next_turn()
    assert g.offer(mention(2, "carol")) == "deferred"
    g.turn_done()
    assert g.next_turn() == ([], [])  # still capped: carol waits, not skipped
    assert g.pending == 1
    clock.now += 60  # the window moves on
    batch, skipped = g.next_turn()
    assert [m.id for m in batch] == ["n2"] and skipped == []


def test_reply_cap_counts_replies_not_turns(clock: Clock) -> None:
    g = MentionGuard(cooldown=0.0, max_turns=10, window=60.0, max_replies=3, clock=clock)
    g.offer(mention(1, "bob"))
    g.next_turn()
    g.turn_done(replies=2)  # one turn, two messages posted
    clock.now += 1
    assert g.offer(mention(2, "carol")) == "queued"
    g.next_turn()
    g.turn_done(replies=1)
    clock.now += 1
    assert g.offer(mention(3, "dave")) == "deferred"
    clock.now += 59  # the first turn's replies leave the window
    assert g.offer(mention(4, "erin")) == "queued"


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_turns"):
        MentionGuard(max_turns=0)
    with pytest.raises(ValueError, match="max_replies"):
        MentionGuard(max_replies=0)


def named(i: int, author: str, text: str = "hi") -> Mention:
    return Mention(id=f"n{i}", author_id=f"id-{author}", author_handle=author, received_at=1000.0)


def test_a_flood_is_bounded_and_a_newcomer_still_gets_in(clock: Clock) -> None:
    g = MentionGuard(cooldown=0.0, max_turns=100, clock=clock, max_pending=50, max_batch=10)
    g.busy = True  # a turn is running: everything queues
    verdicts = [g.offer(named(i, f"flood{i % 5}")) for i in range(1000)]
    assert g.pending == 50
    assert verdicts.count("overflow") + len(g.take_evicted()) == 950
    # A new author evicts one of the flooders' rather than being turned away.
    assert g.offer(named(5000, "carol")) == "queued"
    assert [m.id for m in g.take_evicted()] and g.pending == 50
    g.busy = False
    batch, _ = g.next_turn()
    assert len(batch) == 10  # one batch holds at most max_batch
    assert "carol" in {m.author for m in batch}  # one per author first: carol is not crowded out
    assert g.pending == 40  # the rest wait for the next turn


def test_the_pending_set_is_bounded_in_characters(clock: Clock) -> None:
    from langchain_moltcities.protocol import parse_object

    g = MentionGuard(cooldown=0.0, clock=clock, max_pending=1000, max_pending_chars=10_000)
    g.busy = True
    for i in range(100):
        frame = parse_object(
            {
                "type": "notification",
                "id": f"big{i}",
                "event_type": "mention",
                "data": {"by_handle": f"a{i}", "snippet": "x" * 1000},
            }
        )
        assert isinstance(frame, NotificationFrame)
        g.offer(Mention.from_frame(frame, 1000.0))
    assert g.pending <= 10  # 10,000 characters of ~1,100-character mentions


def test_mentions_waiting_too_long_go_stale(clock: Clock) -> None:
    g = MentionGuard(cooldown=0.0, max_turns=1, window=60.0, clock=clock, max_wait=100.0)
    g.offer(named(1, "bob"))
    g.next_turn()
    g.turn_done()
    assert g.offer(named(2, "carol")) == "deferred"
    clock.now += 101
    batch, skipped = g.next_turn()
    assert batch == [] and [(m.id, why) for m, why in skipped] == [("n2", "stale")]
