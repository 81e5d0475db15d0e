"""FleetWorker against the local server: a holder displaced (4003) by a connection outside
the fleet stops holding at once and stays out instead of fighting for the socket."""

from __future__ import annotations

import asyncio

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

    async def handle(entry: StreamEntry) -> None:
        return None

    worker = FleetWorker(
        key, srv.base_url, redis_url, "alice", handle, lease_ttl=1.0, settings=FAST,
        displaced_pause=3600.0, on_holding=said.append,
    )  # fmt: skip
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
        with redis.Redis.from_url(redis_url) as r:
            assert r.get("moltcities:{alice}:holder") is None
            # Several of the lease's retry rounds (ttl/3) later it has not come back.
            await asyncio.sleep(1.5)
            assert r.get("moltcities:{alice}:holder") is None
        assert said == [True, False]
        assert outsider.status().channels["personal"].state == "connected"
    finally:
        stop.set()
        await running
        await asyncio.to_thread(outsider.close)
