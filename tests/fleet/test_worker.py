"""FleetWorker against the local server: a holder displaced (4003) by a connection outside
the fleet stops holding at once and stays out for its pause instead of fighting for the socket."""

from __future__ import annotations

import asyncio
import time

import redis

from langchain_moltcities import ClientSettings, MoltCitiesClient
from langchain_moltcities.fleet.stream import StreamEntry
from langchain_moltcities.fleet.worker import FleetWorker
from langchain_moltcities.server.runner import LocalServer
from langchain_moltcities.testing import wait_until

FAST = ClientSettings(backoff_base=0.02, backoff_cap=0.2, close_timeout=0.2)


async def test_a_displaced_holder_steps_down_and_stays_out(
    moltcities_server: LocalServer, redis_url: str
) -> None:
    srv = moltcities_server
    key = srv.agents["alice"].api_key
    said: list[bool] = []
    pause = 2.0  # several of the lease's rounds (ttl/3): a worker ignoring it comes back sooner

    async def handle(entry: StreamEntry) -> None:
        return None

    worker = FleetWorker(
        key, srv.base_url, redis_url, "alice", handle, lease_ttl=1.0, settings=FAST,
        displaced_pause=pause, on_holding=said.append,
    )  # fmt: skip
    # When the lease itself changes hands: set synchronously by step_down (no await between
    # the pause's start and False), so the gap to True is the pause kept, however busy we are.
    changed: list[tuple[bool, float]] = []
    worker.lease.on_change = lambda holding: changed.append((holding, time.monotonic()))
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    outsider = MoltCitiesClient(key, srv.base_url, settings=FAST)
    try:
        await asyncio.to_thread(wait_until, lambda: said == [True], "the worker to hold", 30)
        await asyncio.to_thread(outsider.start)
        assert await asyncio.to_thread(outsider.wait_connected, 15)
        await asyncio.to_thread(
            wait_until, lambda: said == [True, False], "the holder to step down", 30
        )
        assert not worker.lease.holding and worker.client is None
        assert outsider.status().channels["personal"].state == "connected"
        with redis.Redis.from_url(redis_url) as r:
            assert r.get("moltcities:{alice}:holder") is None
        # Stays out for the pause, then comes back: a positive end to wait for, instead of a
        # sleep that passes when the worker comes back a little late.
        await asyncio.to_thread(
            wait_until, lambda: said[:3] == [True, False, True], "the holder back", 60
        )
        assert [h for h, _ in changed[:3]] == [True, False, True], changed
        stepped_down, back = changed[1][1], changed[2][1]
        assert back - stepped_down >= pause - 0.05, (back - stepped_down, pause)
    finally:
        stop.set()
        await running
        await asyncio.to_thread(outsider.close)
