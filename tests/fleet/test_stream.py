"""Work sharing through a Redis Stream: real server, real worker processes, one killed.

The books: every item acked by exactly one worker, its MoltCities id queued for the holder
exactly once, nothing left pending; and through the bridge, acks from a worker process reach
the (local) MoltCities server.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from langchain_moltcities import MoltCitiesClient
from langchain_moltcities.fleet.bridge import HolderBridge
from langchain_moltcities.fleet.embedded import EmbeddedRedis
from langchain_moltcities.fleet.lease import HolderLease
from langchain_moltcities.fleet.stream import WorkStream
from langchain_moltcities.protocol import NotificationFrame
from langchain_moltcities.recovered import RECOVERED_EVENT_TYPE
from langchain_moltcities.server.pytest_plugin import ServerFactory
from langchain_moltcities.server.runner import LocalServer
from langchain_moltcities.testing import wait_until

from .procs import WorkerProcess, notification_names, server_books

ROOT = Path(__file__).resolve().parents[2]


class StreamWorker:
    def __init__(self, url: str, name: str, visibility: float, hang: bool = False) -> None:
        args = [sys.executable, "-m", "tests.fleet.stream_worker", url, name, str(visibility)]
        self.proc = subprocess.Popen(
            [*args, *(["hang"] if hang else [])],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            env=os.environ | {"PYTHONPATH": str(ROOT)},
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        wait_until(lambda: "ready" in self.lines, f"worker {name} to start", timeout=60)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def ids(self, what: str) -> list[str]:
        return [line.split()[1] for line in self.lines if line.startswith(what + " ")]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)


@pytest.fixture
def spawn(redis_url: str) -> Iterator[Callable[..., StreamWorker]]:
    started: list[StreamWorker] = []

    def start(name: str, visibility: float, hang: bool = False) -> StreamWorker:
        w = StreamWorker(redis_url, name, visibility, hang)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


def _frame(i: int) -> NotificationFrame:
    return NotificationFrame(id=f"n{i}", event_type="inbox.message", data={"preview": f"#{i}"})


async def test_each_item_is_acked_by_exactly_one_worker_even_when_one_dies(
    redis_url: str, spawn: Callable[..., StreamWorker]
) -> None:
    visibility = 0.5
    holder = WorkStream(redis_url, "agent_x", visibility_timeout=visibility)
    try:
        doomed = spawn("doomed", visibility, hang=True)
        for i in range(40):
            await holder.append(_frame(i))
        await asyncio.to_thread(wait_until, lambda: doomed.ids("got"), "the doomed worker's read")
        taken = doomed.ids("got")
        doomed.stop()  # SIGKILL mid-turn: its entries stay pending, never acked
        workers = [spawn("w1", visibility), spawn("w2", visibility)]
        for i in range(40, 60):
            await holder.append(_frame(i))

        def acked() -> list[str]:
            return [i for w in workers for i in w.ids("acked")]

        await asyncio.to_thread(
            wait_until, lambda: len(set(acked())) == 60, "all 60 acked", timeout=60
        )
        counts = Counter(acked())
        assert set(counts) == {f"n{i}" for i in range(60)}
        assert max(counts.values()) == 1, [i for i, n in counts.items() if n > 1]
        claimed = {
            i
            for w in workers
            for line in w.lines
            if line.endswith(" claimed")
            for i in [line.split()[1]]
        }
        assert set(taken) <= claimed  # the dead worker's items were taken over, not lost
        assert not any("ack-mismatch" in line for w in workers for line in w.lines)
        assert await holder.pending() == 0
        # The holder's list has each MoltCities id exactly once.
        queued = await holder.peek_acks(1000)
        assert sorted(queued) == sorted(f"n{i}" for i in range(60))
        await holder.drop_acks(len(queued))
        assert await holder.peek_acks() == []
    finally:
        await holder.aclose()


async def test_an_id_is_appended_once(redis_url: str) -> None:
    """A new holder is sent again what the old one appended: the stream takes it once."""
    stream = WorkStream(redis_url, "agent_x")
    try:
        assert await stream.append(_frame(1)) is not None
        assert await stream.append(_frame(1), redelivery=True) is None
        assert [e.frame.id for e in await stream.read("w")] == ["n1"]
    finally:
        await stream.aclose()


async def test_a_mention_and_its_recovered_twin_are_one_item(redis_url: str) -> None:
    """A new holder may get the server's mention and the one its client derived from the
    chat (two ids, one chat message): the stream takes the first only."""
    stream = WorkStream(redis_url, "agent_x")
    try:
        server = NotificationFrame(
            id="n9", event_type=RECOVERED_EVENT_TYPE, data={"message_id": "m1"}
        )
        twin = NotificationFrame(
            id="chat:m1", event_type=RECOVERED_EVENT_TYPE, data={"message_id": "m1"}, recovered=True
        )
        assert await stream.append_many([(server, False), (twin, False)]) == 1
        assert [e.frame.id for e in await stream.read("w")] == ["n9"]
    finally:
        await stream.aclose()


async def test_the_stream_is_trimmed(redis_url: str) -> None:
    stream = WorkStream(redis_url, "agent_x", maxlen=100)
    try:
        for i in range(1000):
            await stream.append(_frame(i))
        length = await stream._redis.xlen(stream.key)
        assert 100 <= length < 1000  # MAXLEN ~: trimmed in whole nodes, never below 100
    finally:
        await stream.aclose()


async def test_acks_from_a_worker_process_reach_moltcities(
    moltcities_server: LocalServer, redis_url: str, spawn: Callable[..., StreamWorker]
) -> None:
    srv = moltcities_server
    client = MoltCitiesClient(srv.agents["alice"].api_key, srv.base_url).start()
    stream = WorkStream(redis_url, "agent_x", visibility_timeout=5.0)
    bridge = HolderBridge(client, stream)
    stop = asyncio.Event()
    pumping = asyncio.create_task(bridge.run(stop, interval=0.02))
    try:
        assert await asyncio.to_thread(client.wait_connected, 15)
        worker = spawn("w1", 5.0)
        for i in range(5):
            srv.notify("alice", "inbox.message", {"message_id": f"m{i}", "preview": f"#{i}"})
        alice = srv.agents["alice"].id

        def acked_on_server() -> list[bool]:
            return srv._call(lambda: [n.acked for n in srv.state.notifications[alice]])

        await asyncio.to_thread(
            wait_until,
            lambda: len(acked_on_server()) == 5 and all(acked_on_server()),
            "the worker's acks to reach the server",
            30,
        )
        assert len(worker.ids("acked")) == 5
        # The server has the acks during aack(); the bridge counts them only after dropping
        # them from the stream (another Redis round trip): wait for the count, not the server.
        await asyncio.to_thread(wait_until, lambda: bridge.acks_sent >= 5, "the acks counted", 30)
        assert bridge.appended == 5 and bridge.acks_sent == 5
    finally:
        stop.set()
        await pumping
        await stream.aclose()
        await asyncio.to_thread(client.close)


@pytest.mark.parametrize("mode", ["documented", "live"])
async def test_a_holder_past_its_lease_leaves_the_acks_to_its_successor(
    mode: str, moltcities_server_factory: ServerFactory, redis_url: str
) -> None:
    """A holder frozen past its lease (SIGSTOP, a GC pause) wakes up mid-round still trusting
    its lease for a moment, with its socket displaced by the new holder: its client can only
    queue the workers' acks. It must not drop them from Redis; the new holder sends them."""
    import redis.asyncio as aioredis

    srv = moltcities_server_factory(mode=mode)
    key = srv.agents["alice"].api_key
    old = MoltCitiesClient(key, srv.base_url).start()
    stream = WorkStream(redis_url, "agent_f", visibility_timeout=30.0)
    lease_old = HolderLease(redis_url, "agent_f", ttl=60.0)
    lease_new = HolderLease(redis_url, "agent_f", ttl=60.0)
    r = aioredis.Redis.from_url(redis_url)
    new: MoltCitiesClient | None = None
    try:
        assert await lease_old.try_acquire()
        assert await asyncio.to_thread(old.wait_connected, 15)
        bridge_old = HolderBridge(old, stream, lease=lease_old)
        for i in range(3):
            srv.notify("alice", "inbox.message", {"message_id": f"f{i}", "preview": f"#{i}"})

        async def pump_until(bridge: HolderBridge, done: Callable[[], bool]) -> None:
            while not done():
                await bridge.pump()
                await asyncio.sleep(0.02)

        await asyncio.wait_for(pump_until(bridge_old, lambda: bridge_old.appended == 3), 30)
        entries = await stream.read("w1", count=10)
        assert len(entries) == 3 and await stream.ack(entries) == 3  # the worker's acks
        # The old holder stalls: its lease runs out (here: deleted) and another process
        # takes it and the agent's sockets, before the old one's next round.
        await r.delete(lease_old.key)
        assert await lease_new.try_acquire()
        new = MoltCitiesClient(key, srv.base_url).start()
        assert await asyncio.to_thread(new.wait_connected, 15)
        await asyncio.to_thread(
            wait_until, lambda: not old.status().connected, "the old socket displaced", 15
        )
        assert lease_old.holding  # it wakes still trusting its lease...
        await bridge_old.pump()
        assert bridge_old.acks_sent == 0  # ...but the acks stay for the new holder
        assert len(await stream.peek_acks()) >= 3
        bridge_new = HolderBridge(new, stream, lease=lease_new)
        books = server_books(srv)

        def all_done() -> bool:
            return len(books()) == 3 and all(done for _, done in books())

        await asyncio.wait_for(
            pump_until(bridge_new, lambda: all_done() and bridge_new.acks_sent > 0), 30
        )
        assert await stream.peek_acks() == []
    finally:
        await r.aclose()
        await stream.aclose()
        await lease_old.aclose()
        await lease_new.aclose()
        await asyncio.to_thread(old.close)
        if new is not None:
            await asyncio.to_thread(new.close)


class FleetProcess(WorkerProcess):
    def __init__(self, srv: LocalServer, redis_url: str, name: str) -> None:
        module = "tests.fleet.fleet_worker"
        super().__init__(srv, module, srv.base_url, redis_url, name, name=name)

    def handled(self) -> list[str]:
        return [words[0] for words in self.said("handled")]


@pytest.mark.parametrize("mode", ["documented", "live"])
def test_three_workers_one_identity_holder_killed(
    mode: str, moltcities_server_factory: ServerFactory, redis_url: str
) -> None:
    """3 worker processes, the local server (both dialects), Redis; the holder SIGKILLed
    halfway. The books: every notification acked on the server, each handled once (only an
    item the dead worker was handling when killed may have been handled again), and a new
    holder took over."""
    srv = moltcities_server_factory(mode=mode)
    workers = [FleetProcess(srv, redis_url, f"w{i}") for i in range(3)]
    notes_on_server = server_books(srv)

    try:
        wait_until(lambda: sum(w.holding for w in workers) == 1, "one holder", timeout=60)
        first = next(w for w in workers if w.holding)
        for i in range(15):
            srv.notify("alice", "inbox.message", {"message_id": f"a{i}", "preview": f"#{i}"})
        wait_until(
            lambda: sum(len(w.handled()) for w in workers) >= 5, "traffic to flow", timeout=60
        )
        first.proc.kill()
        first.proc.wait(timeout=30)
        for i in range(15):
            srv.notify("alice", "inbox.message", {"message_id": f"b{i}", "preview": f"#{i}"})
        survivors = [w for w in workers if w is not first]
        wait_until(lambda: any(w.holding for w in survivors), "a new holder", timeout=60)
        assert sum(w.holding for w in survivors) == 1
        wait_until(
            lambda: len(notes_on_server()) == 30 and all(a for _, a in notes_on_server()),
            "every notification acked on the server",
            timeout=90,
        )
        by_survivors = Counter(i for w in survivors for i in w.handled())
        assert max(by_survivors.values()) == 1, by_survivors
        # Live: what the server pushed onto the killed holder's socket is not pushed again;
        # the new holder takes it from the REST list, under its REST id.
        handled = set(by_survivors) | set(first.handled())
        for names in notification_names(srv):
            assert names & handled, names
            assert sum(by_survivors[n] for n in names) <= 1, names
    finally:
        for w in workers:
            w.stop()


def test_workers_ride_out_a_redis_restart(
    moltcities_server: LocalServer, redis_factory: Callable[..., EmbeddedRedis]
) -> None:
    """Redis stopped (gracefully, its append-only file kept) and started again mid-traffic:
    nobody holds meanwhile, then everything is handled once and acked on the server."""
    srv = moltcities_server
    server = redis_factory(appendonly=True)
    workers = [FleetProcess(srv, server.url, f"w{i}") for i in range(2)]
    books = server_books(srv)
    try:
        wait_until(lambda: sum(w.holding for w in workers) == 1, "one holder", timeout=60)
        for i in range(10):
            srv.notify("alice", "inbox.message", {"message_id": f"a{i}", "preview": f"#{i}"})
        wait_until(lambda: sum(a for _, a in books()) >= 3, "traffic to flow", timeout=60)
        server.stop(graceful=True)
        wait_until(lambda: not any(w.holding for w in workers), "the holder to let go", 60)
        for i in range(10):
            srv.notify("alice", "inbox.message", {"message_id": f"b{i}", "preview": f"#{i}"})
        server.start()
        wait_until(
            lambda: len(books()) == 20 and all(a for _, a in books()),
            "every notification acked on the server",
            timeout=90,
        )
        handled = Counter(i for w in workers for i in w.handled())
        assert set(handled) == {i for i, _ in books()}
        assert max(handled.values()) == 1, handled
        assert all(w.proc.poll() is None for w in workers)  # nobody died of it
    finally:
        for w in workers:
            w.stop()
