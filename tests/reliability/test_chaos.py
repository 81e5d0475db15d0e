"""Short seeded chaos runs in both server modes; the books must balance (see ``chaos.py``).

Replay a failure with ``CHAOS_SEED=<seed>`` (printed with the schedule); ``make soak`` runs
the long version.
"""

from __future__ import annotations

import os

import pytest

from .chaos import Mode, describe_schedule, run_chaos

SEED = int(os.environ.get("CHAOS_SEED", "20260214"))


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["documented", "live"])
def test_chaos_books_balance(mode: Mode) -> None:
    report = run_chaos(mode, SEED, duration=14.0, min_notifications=1500, min_chat=50)
    replay = f"{report.summary()}\n{describe_schedule(report.seed, report.schedule)}"
    print(replay)
    assert report.problems() == [], replay
    # The run really was chaotic: every kind of fault, thousands of notifications, chat.
    assert {r.fault.kind for r in report.faults} >= {
        "drop",
        "restart",
        "freeze",
        "close4000",
        "refuse503",
    }
    assert report.notifications_raised >= 1500 and report.chat_posted >= 50
    # Every fault found the client connected; all but a freeze (which a busy client may not
    # notice before the thaw) end its links for sure.
    assert min(report.connects.values()) >= 1 + sum(r.fault.kind != "freeze" for r in report.faults)
    assert report.consumer_read >= report.notifications_delivered > 0
    # Every chat mention reached the consumer (problems() demands it); there were some, and
    # some of them only as the client's recovery from the chat line.
    assert report.chat_mentions_posted >= 10 and report.chat_mentions_lost == []
    assert report.mentions_recovered > 0
    if mode == "documented":
        assert report.notifications_delivered == report.notifications_raised
        assert report.client_duplicates_dropped > 0  # redelivery happened and was absorbed
    else:
        # The live server's at-most-once rules did cost something, and the client said so.
        assert report.losses_by_cause["offline queue over 100"] > 0
        assert report.client_offline_queue_full > 0
        assert report.queue_overflows_seen > 0  # the per-overflow check had something to check
        assert report.lossy_links > 0  # and so had the lost-links one
        assert report.acked_but_unread == 0  # acks marked read over REST
    # Bounded: the consumer keeps up, acks don't pile up without limit.
    assert report.max_pending <= 5000
