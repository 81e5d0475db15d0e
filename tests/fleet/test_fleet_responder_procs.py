"""Three worker processes run the fleet's mention responder (offline model) for one identity,
with the local server and a real Redis. The books come from the server's own chat:

- one worker is SIGKILLed in the middle of a turn, its reply already posted: the mention is
  not answered again by the worker its stream entry passes to; every author is answered once
  across the fleet (cooldown shared), and no more turns start per window than the cap allows;
- the server rate-limits alice's chat: a 429 pauses every worker for its ``retry_after``, no
  worker asks MoltCities again during it, and every mention is still answered exactly once.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import redis

from langchain_moltcities.server.pytest_plugin import ServerFactory
from langchain_moltcities.server.runner import LocalServer
from langchain_moltcities.testing import post_as, wait_until

from .procs import WorkerProcess

ROOT = Path(__file__).resolve().parents[2]
RESIDENTS = ("bob", "carol", "dave", "erin", "frank", "grace")
STREAM = "moltcities:{alice}:notifications"


class ResponderProcess(WorkerProcess):
    def __init__(
        self, srv: LocalServer, redis_url: str, name: str, *, cooldown: float, turns: int,
        window: float,
    ) -> None:  # fmt: skip
        args = [srv.base_url, redis_url, name, str(cooldown), str(turns), str(window)]
        super().__init__(srv, "tests.fleet.responder_worker", *args, name=name)


def _spawn(srv: LocalServer, redis_url: str, **rules: float) -> list[ResponderProcess]:
    workers = [ResponderProcess(srv, redis_url, f"w{i}", **rules) for i in range(3)]  # type: ignore[arg-type]
    wait_until(lambda: sum(w.holding for w in workers) == 1, "one holder", timeout=60)
    return workers


def _wait_settled(workers: list[ResponderProcess], ids: set[str], redis_url: str) -> None:
    try:
        wait_until(lambda: _settled(workers, ids, redis_url), "every mention handled", 75)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {[(w.name, w.lines) for w in workers]}") from None


def _mention_ids(srv: LocalServer) -> set[str]:
    return srv._call(lambda: {m.id for m in srv.state.chat if m.agent.handle != "alice"})


def _replies(srv: LocalServer) -> list[tuple[str, str]]:
    """(text, created_at) of every message alice posted."""
    return srv._call(
        lambda: [(m.message, m.created_at) for m in srv.state.chat if m.agent.handle == "alice"]
    )


def _settled(workers: list[ResponderProcess], ids: set[str], redis_url: str) -> bool:
    """Every mention handled, every entry acked, no turn still running (an entry re-claimed
    from a worker still in its turn is acked by the other as a duplicate)."""
    if any(len(w.said("turn")) != len(w.said("ended")) for w in workers):
        return False
    seen = {o[0] for w in workers for o in w.said("outcome")}
    with redis.Redis.from_url(redis_url) as r:
        pending = r.xpending(STREAM, "workers")["pending"] if r.exists(STREAM) else 1
    return ids <= seen and pending == 0


def test_a_worker_killed_mid_turn_leaves_each_author_answered_once(
    moltcities_server_factory: ServerFactory, redis_url: str
) -> None:
    srv = moltcities_server_factory(agents=("alice", *RESIDENTS))
    window = 3.0
    workers = _spawn(srv, redis_url, cooldown=60, turns=2, window=window)
    try:
        post_as(srv, "bob", "@alice STALL: will you answer?").raise_for_status()
        wait_until(lambda: any(w.said("stalled") for w in workers), "the stalled turn", 30)
        staller = next(w for w in workers if w.said("stalled"))
        staller.proc.kill()  # its reply is out; its turn never ends
        staller.proc.wait(timeout=30)
        for round_ in ("first", "second"):
            for who in RESIDENTS:
                post_as(srv, who, f"@alice {round_} question from {who}?").raise_for_status()
        ids = _mention_ids(srv)
        assert len(ids) == 1 + 2 * len(RESIDENTS)
        survivors = [w for w in workers if w is not staller]
        try:
            _wait_settled(survivors, ids, redis_url)
        except AssertionError as exc:
            raise AssertionError(f"{exc} {staller.name}: {staller.lines}") from None
        replies = _replies(srv)
        # Each author answered exactly once by the whole fleet, bob by the killed worker.
        for who in RESIDENTS:
            assert sum(f"@{who} " in text for text, _ in replies) == 1, (who, replies)
        assert len(replies) == len(RESIDENTS)
        # What became of each mention (an entry re-claimed from a worker still waiting for
        # the cap is handled twice: the second finds it answered, a duplicate).
        became: dict[str, set[str]] = {}
        for w in workers:
            for chat_id, outcome in w.said("outcome"):
                became.setdefault(chat_id, set()).add(outcome)
        stall_id = srv._call(lambda: next(m.id for m in srv.state.chat if "STALL" in m.message))
        assert became.pop(stall_id) == {"duplicate"}  # the killed worker's, passed on
        answered = [i for i, o in became.items() if "answered" in o]
        assert len(answered) == len(RESIDENTS) - 1, became  # bob's was the killed worker's
        assert all(o <= {"answered", "duplicate"} for i, o in became.items() if i in answered)
        # The rest were skipped for the cooldown (and, handed out again, found done).
        others = [o for i, o in became.items() if i not in answered]
        assert all("cooldown" in o and o <= {"cooldown", "duplicate"} for o in others), became
        # The turn cap, shared: never more than 2 turns admitted in any 3 s.
        turns = sorted(float(t[0]) for w in workers for t in w.said("turn"))
        assert len(turns) == len(RESIDENTS)
        # (A retried turn keeps its first admission time: none here.)
        assert all(b - a >= window for a, b in zip(turns, turns[2:], strict=False)), turns
    finally:
        for w in workers:
            w.stop()


def test_a_429_pauses_every_worker_for_its_retry_after(
    moltcities_server_factory: ServerFactory, redis_url: str
) -> None:
    # Alice may post 2 messages per 4 s; six authors mention her at once.
    srv = moltcities_server_factory(agents=("alice", *RESIDENTS), chat_rate_limit=(2, 4.0))
    workers = _spawn(srv, redis_url, cooldown=0, turns=100, window=60)
    try:
        for who in RESIDENTS:
            post_as(srv, who, f"@alice a question from {who}?").raise_for_status()
        ids = _mention_ids(srv)
        _wait_settled(workers, ids, redis_url)
        replies = _replies(srv)
        for who in RESIDENTS:
            assert sum(f"@{who} " in text for text, _ in replies) == 1, (who, replies)
        outcomes = Counter(o[1] for w in workers for o in w.said("outcome"))
        # A worker waiting out the pause past the visibility timeout has its entry re-claimed
        # by another, which then finds it answered: a duplicate, never a second reply.
        assert outcomes["answered"] == len(RESIDENTS)
        assert set(outcomes) <= {"answered", "duplicate"}, outcomes
        limits = sorted((float(at), float(s)) for w in workers for at, s in w.said("429"))
        assert limits, "the server's rate limit was never met"
        # After a 429 nobody asks MoltCities again until its pause is over: other 429s come
        # only from posts already on their way when it was set.
        # A post already on its way when the pause was set may meet its own 429 a little
        # later: allow that much (generous, for a busy machine).
        slack = 1.5
        for at, seconds in limits:
            inside = [t for t, _ in limits if at + slack < t < at + seconds]
            assert not inside, (limits, "a 429 during another's pause: someone asked again")
    finally:
        for w in workers:
            w.stop()
