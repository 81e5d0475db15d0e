"""The holder lease against a real Redis-compatible server and real processes.

Safety (never two holders) and liveness (a standby takes over once the holder is gone, even
by SIGKILL) are what is asserted; how fast failover is belongs to benchmarks.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from langchain_moltcities.errors import InvalidArgumentError
from langchain_moltcities.fleet.embedded import EmbeddedRedis
from langchain_moltcities.fleet.lease import HolderLease
from langchain_moltcities.testing import wait_until

ROOT = Path(__file__).resolve().parents[2]
KEY = "moltcities:{agent_x}:holder"


class Worker:
    """A lease_worker process; its lines are gathered by a thread as they come."""

    def __init__(self, url: str, ttl: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fleet.lease_worker", url, "agent_x", str(ttl)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            env=os.environ | {"PYTHONPATH": str(ROOT)},
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        wait_until(lambda: bool(self.lines), "the worker to start", timeout=60)
        self.token = self.lines[0].split()[1]

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    @property
    def holding(self) -> bool:
        """What the worker last said about itself."""
        events = [line.split()[0] for line in self.lines[1:]]
        return bool(events) and events[-1] == "holding"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)


@pytest.fixture
def workers(redis_url: str) -> Iterator[Callable[[float], Worker]]:
    started: list[Worker] = []

    def start(ttl: float) -> Worker:
        w = Worker(redis_url, ttl)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


def _owner(url: str) -> str | None:
    with redis.Redis.from_url(url, decode_responses=True) as r:
        value = r.get(KEY)
        return None if value is None else str(value)


def test_two_processes_one_holder_and_sigkill_failover(
    redis_url: str, workers: Callable[[float], Worker]
) -> None:
    ttl = 1.0
    a, b = workers(ttl), workers(ttl)
    wait_until(lambda: a.holding or b.holding, "one worker to hold", timeout=30)
    holder, standby = (a, b) if a.holding else (b, a)
    assert _owner(redis_url) == holder.token
    # Across many renewals (3 per lease) the two never both hold, and the holder stays put.
    end = time.monotonic() + 4 * ttl
    while time.monotonic() < end:
        assert not (a.holding and b.holding)
        time.sleep(0.02)
    assert holder.holding and not standby.holding
    assert _owner(redis_url) == holder.token

    holder.proc.kill()  # SIGKILL: no release, the key must expire
    holder.proc.wait(timeout=30)
    wait_until(lambda: standby.holding, "the standby to take over", timeout=30)
    assert _owner(redis_url) == standby.token


def test_a_clean_stop_hands_over_at_once(
    redis_url: str, workers: Callable[[float], Worker]
) -> None:
    """SIGTERM releases the key (it would otherwise outlive the test), so a standby's next
    try takes it without waiting for the lease to run out."""
    a = workers(3600.0)
    wait_until(lambda: a.holding, "the worker to hold", timeout=30)
    assert _owner(redis_url) == a.token
    a.proc.terminate()
    assert a.proc.wait(timeout=30) == 0
    assert a.lines[-1] == f"standby {a.token}"
    assert _owner(redis_url) is None
    b = workers(3600.0)
    wait_until(lambda: b.holding, "a new worker to hold at once", timeout=30)


async def test_a_holder_whose_key_is_taken_stops_holding_at_once(redis_url: str) -> None:
    changes: list[bool] = []
    lease = HolderLease(redis_url, "agent_x", ttl=60, on_change=changes.append)
    try:
        assert await lease.try_acquire() and lease.holding
        other = HolderLease(redis_url, "agent_x", ttl=60)
        assert not await other.try_acquire() and not other.holding
        with redis.Redis.from_url(redis_url) as r:
            r.set(KEY, "somebody else")  # e.g. an operator, or our key expired and was re-taken
        assert not await lease.renew()
        assert not lease.holding and changes == [True, False]
        await lease.release()  # not ours any more: left alone
        assert _owner(redis_url) == "somebody else"
        await other.aclose()
    finally:
        await lease.aclose()


async def test_a_holder_that_cannot_reach_redis_stops_holding(
    redis_factory: Callable[..., EmbeddedRedis],
) -> None:
    server = redis_factory()
    lease = HolderLease(server.url, "agent_x", ttl=60)
    try:
        assert await lease.try_acquire()
        server.stop()
        assert not await lease.renew()
        assert not lease.holding
    finally:
        await lease.aclose()


async def test_holding_lapses_by_itself_when_renewals_stop(redis_url: str) -> None:
    """A stalled holder (no renewal within the lease) no longer claims to hold."""
    lease = HolderLease(redis_url, "agent_x", ttl=0.3, renew_every=0.1)
    try:
        assert await lease.try_acquire()
        await asyncio.sleep(0.6)  # the stall being simulated: no renewal in twice the lease
        assert not lease.holding
        stop = asyncio.Event()
        changes: list[bool] = []
        held_again = asyncio.Event()

        def note(holding: bool) -> None:
            changes.append(holding)
            if holding:
                held_again.set()

        lease.on_change = note
        runner = asyncio.create_task(lease.run(stop))
        await asyncio.wait_for(held_again.wait(), timeout=30)
        # It said it had lost the lease before claiming it again: no silent lapse.
        assert changes == [False, True] and lease.holding
        stop.set()
        await runner
        assert _owner(redis_url) is None  # released on stop
    finally:
        await lease.aclose()


def test_bad_settings_say_what_is_wrong(redis_url: str) -> None:
    with pytest.raises(InvalidArgumentError, match="ttl must be positive"):
        HolderLease(redis_url, "a", ttl=0)
    with pytest.raises(InvalidArgumentError, match="shorter than the lease"):
        HolderLease(redis_url, "a", ttl=1, renew_every=2)
