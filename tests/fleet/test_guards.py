"""The shared mention guards' rules, on a real Redis-compatible server and in memory alike:
answered once, claims that expire with a dead worker (then ``retry``), cooldowns, turn and
reply caps, the 429 pause; and on Redis, keys under the identity's hash tag with TTLs, atomic
admission under racing workers, and a clear error when Redis is down."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
import redis

from langchain_moltcities.fleet.embedded import EmbeddedRedis
from langchain_moltcities.fleet.guards import (
    Admission,
    GuardLimits,
    MemoryTurnGuards,
    RedisTurnGuards,
    SharedGuardsError,
    TurnGuards,
)
from langchain_moltcities.testing import wait_until

Make = Callable[..., TurnGuards]

BOB = ["a:agent_bob", "h:bob"]
CAROL = ["a:agent_carol", "h:carol"]


@pytest.fixture(params=["redis", "memory"])
def make(request: pytest.FixtureRequest) -> Make:
    if request.param == "memory":
        return lambda **kw: MemoryTurnGuards(GuardLimits(**kw))
    url: str = request.getfixturevalue("redis_url")
    return lambda **kw: RedisTurnGuards(url, "alice", GuardLimits(**kw))


def test_a_mention_is_claimed_once_and_done_under_either_of_its_ids(make: Make) -> None:
    g = make(cooldown=0)
    first = g.begin(["n1", "chat:c1"], BOB, "w1:a")
    assert first.verdict == "claimed" and first.since is not None
    # The same chat message under another notification id (recovered from the chat): busy.
    busy = g.begin(["n2", "chat:c1"], BOB, "w2:a")
    assert busy.verdict == "busy" and 0 < busy.wait <= 30
    assert g.finish(["n1", "chat:c1"], BOB, "w1:a", "answered", 1)
    for keys in (["n1", "chat:c1"], ["n2", "chat:c1"]):
        again = g.begin(keys, BOB, "w3:a")
        assert again.verdict == "duplicate" and again.done_as == "answered"


def test_a_claim_left_by_a_dead_worker_expires_into_a_retry(make: Make) -> None:
    g = make(cooldown=60, claim_ttl=0.3)
    first = g.begin(["n1"], BOB, "dead:1")
    assert first.verdict == "claimed"
    # The dead worker never renews: its claim runs out, and the next worker is told an
    # earlier attempt began (when), with the author's cooldown not in its way.
    assert g.begin(["n1"], BOB, "w2:1").verdict == "busy"
    got: list[Admission] = []

    def expired() -> bool:
        got.append(g.begin(["n1"], BOB, f"w2:{len(got)}"))
        return got[-1].verdict != "busy"

    wait_until(expired, "the claim to expire", 30)
    assert got[-1].verdict == "retry"
    assert got[-1].since == pytest.approx(first.since, abs=0.01)
    # The retry holds the claim now.
    assert g.begin(["n1"], BOB, "w3:1").verdict == "busy"


def test_renewal_keeps_a_claim_and_fails_once_it_is_lost(make: Make) -> None:
    g = make(claim_ttl=0.4)
    assert g.begin(["n1"], BOB, "w1:1").verdict == "claimed"
    deadline = time.monotonic() + 1.2
    while time.monotonic() < deadline:
        assert g.renew(["n1"], BOB, "w1:1")
        assert g.begin(["n1"], BOB, "w2:1").verdict == "busy"
        time.sleep(0.1)
    assert not g.renew(["n1"], BOB, "w2:1")  # not its claim


def test_an_author_answered_waits_out_the_cooldown_across_workers(make: Make) -> None:
    g = make(cooldown=0.6)
    assert g.begin(["n1"], BOB, "w1:1").verdict == "claimed"
    # While bob's turn runs, and after it, bob's other mentions are skipped; carol's are not.
    assert g.begin(["n2"], BOB[1:], "w2:1").verdict == "cooldown"  # known by handle alone
    assert g.begin(["n3"], CAROL, "w3:1").verdict == "claimed"
    g.finish(["n1"], BOB, "w1:1", "answered", 1)
    cool = g.begin(["n4"], BOB, "w2:2")
    assert cool.verdict == "cooldown" and 0 < cool.wait <= 0.6
    wait_until(
        lambda: g.begin(["n5"], BOB, "w2:3").verdict == "claimed", "bob's cooldown to end", 30
    )


def test_without_a_cooldown_an_authors_mentions_wait_for_the_turn_in_flight(make: Make) -> None:
    g = make(cooldown=0)
    assert g.begin(["n1"], BOB, "w1:1").verdict == "claimed"
    assert g.begin(["n2"], BOB, "w2:1").verdict == "busy"
    g.finish(["n1"], BOB, "w1:1", "answered", 1)
    assert g.begin(["n2"], BOB, "w2:2").verdict == "claimed"


def test_the_turn_cap_is_shared_and_says_how_long_to_wait(make: Make) -> None:
    g = make(cooldown=0, max_turns=2, window=1.0)
    assert g.begin(["n1"], ["a:1"], "t1").verdict == "claimed"
    assert g.begin(["n2"], ["a:2"], "t2").verdict == "claimed"
    capped = g.begin(["n3"], ["a:3"], "t3")
    assert capped.verdict == "cap" and 0 < capped.wait <= 1.0
    # A retry of an admitted turn is not a new turn: the cap does not hold it back.
    g.release(["n2"], ["a:2"], "t2")
    assert g.begin(["n2"], ["a:2"], "t2b").verdict == "retry"
    wait_until(lambda: g.begin(["n3"], ["a:3"], "t3b").verdict == "claimed", "the window", 30)


def test_the_reply_cap_counts_the_replies_turns_posted(make: Make) -> None:
    g = make(cooldown=0, max_turns=100, window=1.0, max_replies=2)
    assert g.begin(["n1"], ["a:1"], "t1").verdict == "claimed"
    g.finish(["n1"], ["a:1"], "t1", "answered", 3)  # one turn, three posts
    capped = g.begin(["n2"], ["a:2"], "t2")
    assert capped.verdict == "cap" and 0 < capped.wait <= 1.0
    wait_until(lambda: g.begin(["n2"], ["a:2"], "t2b").verdict == "claimed", "the window", 30)


def test_a_429_pauses_every_turn_and_is_never_shortened(make: Make) -> None:
    g = make()
    assert g.paused_for() == 0
    assert g.pause(0.8) == pytest.approx(0.8, abs=0.1)
    assert g.pause(0.1) > 0.5  # a shorter retry_after does not end the longer pause
    paused = g.begin(["n1"], BOB, "w1:1")
    assert paused.verdict == "paused" and 0 < paused.wait <= 0.8
    wait_until(lambda: g.paused_for() == 0, "the pause to end", 30)
    assert g.begin(["n1"], BOB, "w1:2").verdict == "claimed"


def test_done_marks_a_mention_whose_reply_is_out(make: Make) -> None:
    g = make()
    assert g.begin(["n1", "chat:c1"], BOB, "w1:1").verdict == "claimed"
    g.done(["n1", "chat:c1"])
    # The worker is killed now: its claim expiring does not make anyone answer again.
    assert g.begin(["n1", "chat:c1"], BOB, "w2:1").verdict == "duplicate"


def test_every_key_sits_under_the_identity_tag_with_a_ttl(redis_url: str) -> None:
    g = RedisTurnGuards(redis_url, "alice", GuardLimits(cooldown=5, max_replies=3))
    assert g.begin(["n1", "chat:c1"], BOB, "w1:1").verdict == "claimed"
    assert g.begin(["n2"], CAROL, "w1:2").verdict == "claimed"
    g.finish(["n1", "chat:c1"], BOB, "w1:1", "answered", 2)
    g.pause(3)
    with redis.Redis.from_url(redis_url) as r:
        keys = [k.decode() for k in r.scan_iter("*")]
        assert len(keys) >= 8
        for key in keys:
            assert key.startswith("moltcities:{alice}:resp:"), key
            assert r.pttl(key) > 0, key
    g.close()


def test_racing_workers_admit_one_turn_per_author(redis_url: str) -> None:
    g = RedisTurnGuards(redis_url, "alice", GuardLimits(cooldown=30, max_turns=1000))
    verdicts: list[str] = []
    start = threading.Barrier(8)

    def worker(i: int) -> None:
        start.wait()
        for j in range(10):
            verdicts.append(g.begin([f"n{i}-{j}"], BOB, f"w{i}:{j}").verdict)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert verdicts.count("claimed") == 1
    assert verdicts.count("cooldown") == 79
    g.close()


def test_redis_down_is_a_clear_error_without_the_password(
    redis_factory: Callable[..., EmbeddedRedis],
) -> None:
    server = redis_factory()
    url = server.url.replace("redis://", "redis://:s3cret@")
    with redis.Redis.from_url(server.url) as r:
        r.config_set("requirepass", "s3cret")
    g = RedisTurnGuards(url, "alice", timeout=2.0)
    assert g.begin(["n1"], BOB, "w1:1").verdict == "claimed"
    server.stop()
    started = time.monotonic()
    with pytest.raises(SharedGuardsError) as err:
        g.begin(["n2"], BOB, "w1:2")
    assert time.monotonic() - started < 15
    text = str(err.value)
    assert "s3cret" not in text and "unreachable" in text and "127.0.0.1" in text
    assert "s3cret" not in repr(g)
    g.close()
