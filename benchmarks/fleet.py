"""Figure 8: the fleet over a real Redis-compatible server.

Failover: one identity served by two FleetWorker processes; the holder is SIGKILLed again and
again. Measured from the kill to the moment another worker holds the lease with its sockets up
(its client connected), on CLOCK_MONOTONIC shared by the processes. The baseline is the lease
itself: nobody may take over before the dead holder's key expires.

Throughput: notifications/s from the socket to a worker's hands through Redis (client ->
HolderBridge -> stream -> consumer group read + ack), against the same flood read straight
from the single-process client's buffer in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import threading
import time

from benchmarks.common import (
    ROOT,
    Context,
    Row,
    Section,
    _child_env,
    median,
    now_ns,
    percentile,
)
from benchmarks.local_server import local_server_process

LEASE_TTL = 2.0
RECONNECT_ALLOWANCE = 1.0  # one reconnect to the (local) server
# Notifications reach an agent a few a minute; a fleet must keep up with bursts, not floods.
THROUGHPUT_FLOOR = 500


class _Worker:
    def __init__(self, base: str, redis_url: str, key: str, name: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.fleet", "worker", base, redis_url, name],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=_child_env(),
        )
        assert self.proc.stdin is not None
        self.proc.stdin.write(key + "\n")
        self.proc.stdin.close()
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def held_at(self) -> list[int]:
        return [int(ln.split()[2]) for ln in self.lines if ln.startswith("holder on ")]

    @property
    def holding(self) -> bool:
        said = [ln for ln in self.lines if ln.startswith("holder ")]
        return bool(said) and said[-1].startswith("holder on")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)


def _wait(predicate: object, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _failovers(base: str, key: str, redis_url: str, kills: int) -> list[float]:
    workers = [_Worker(base, redis_url, key, f"w{i}") for i in range(2)]
    times: list[float] = []
    try:
        for n in range(kills):
            _wait(lambda ws=workers: sum(w.holding for w in ws) == 1, "one holder")
            holder = next(w for w in workers if w.holding)
            standby = next(w for w in workers if w is not holder)
            _wait(lambda s=standby: "ready" in s.lines, "the standby to start")
            time.sleep(0.5)  # let the standby settle into its retry rhythm
            t_kill = now_ns()
            holder.kill()
            _wait(lambda s=standby, k=t_kill: any(t > k for t in s.held_at()), "the takeover")
            times.append((min(t for t in standby.held_at() if t > t_kill) - t_kill) / 1e9)
            workers = [standby, _Worker(base, redis_url, key, f"w{n + 2}")]
    finally:
        for w in workers:
            w.kill()
    return times


def _single_seconds(flood: str, n: int) -> float:
    from benchmarks.clients import make_client, start_connected
    from langchain_moltcities.protocol import DOCUMENTED_EVENT_TYPES

    client = make_client(f"{flood}/flood/{n}", buffer_size=n)
    with start_connected(client):
        t0 = time.perf_counter()
        client.set_subscriptions(list(DOCUMENTED_EVENT_TYPES))
        got = 0
        while got < n:
            items = client.read_notifications(limit=1000).items
            got += len(items)
            if not items:
                time.sleep(0.001)
        return time.perf_counter() - t0


async def _fleet_seconds(flood: str, n: int, redis_url: str) -> tuple[float, dict[str, bool]]:
    from benchmarks.clients import make_client, start_connected
    from langchain_moltcities.fleet.bridge import HolderBridge
    from langchain_moltcities.fleet.stream import WorkStream
    from langchain_moltcities.protocol import DOCUMENTED_EVENT_TYPES

    identity = f"bench-{now_ns()}"
    holder_side = WorkStream(redis_url, identity, maxlen=2 * n)
    worker_side = WorkStream(redis_url, identity, maxlen=2 * n)
    client = make_client(f"{flood}/flood/{n}", buffer_size=n)
    bridge = HolderBridge(client, holder_side)
    handled = 0
    seen: set[str] = set()

    async def consume() -> None:
        nonlocal handled
        while handled < n:
            entries = await worker_side.read("w1", count=500, block=0.05)
            await worker_side.ack(entries)
            handled += len(entries)
            seen.update(e.frame.id for e in entries)

    with start_connected(client):
        t0 = time.perf_counter()
        await asyncio.to_thread(client.set_subscriptions, list(DOCUMENTED_EVENT_TYPES))
        consumer = asyncio.create_task(consume())
        while not consumer.done():
            if not await bridge.pump():
                await asyncio.sleep(0.001)
        await consumer
        elapsed = time.perf_counter() - t0
    checks = {
        f"{n}/{n} handled, none twice": handled == n and len(seen) == n,
        "nothing left unacked": await worker_side.pending() == 0,
    }
    await holder_side.aclose()
    await worker_side.aclose()
    return elapsed, checks


def run(ctx: Context) -> Section:
    from langchain_moltcities.fleet.embedded import EmbeddedRedis

    kills = 3 if ctx.quick else 12
    n = 2_000 if ctx.quick else 20_000
    with EmbeddedRedis() as redis_server:
        single = n / _single_seconds(ctx.flood_url, n)
        fleet_seconds, fleet_checks = asyncio.run(
            _fleet_seconds(ctx.flood_url, n, redis_server.url)
        )
        fleet = n / fleet_seconds
        with local_server_process(1) as (base, keys):
            times = _failovers(base, keys[0], redis_server.url, kills)
    bound = LEASE_TTL + LEASE_TTL / 3 + RECONNECT_ALLOWANCE
    failover_checks = {f"{kills}/{kills} kills taken over": len(times) == kills}
    med, p99 = median(times), percentile(times, 99)
    rows = [
        Row(
            figure="8. Fleet throughput: socket -> Redis stream -> a worker's read + ack",
            measured=round(fleet),
            unit="msg/s",
            baseline=round(single),
            ratio=f"{fleet / single:.3f} of the single-process client",
            target=f">= {THROUGHPUT_FLOOR:,} msg/s (far above one agent's traffic)",
            passed=fleet >= THROUGHPUT_FLOOR,
            note=f"{n} flooded notifications, one holder, one consumer in one process",
            checks=fleet_checks,
        ),
        Row(
            figure=f"8. Fleet failover after SIGKILL of the holder, median of {kills}",
            measured=round(med, 3),
            unit="s",
            baseline=LEASE_TTL,
            ratio=f"{med / LEASE_TTL:.2f} of the lease",
            target=f"<= {bound:.2f} s (lease + one retry + one reconnect)",
            passed=med <= bound,
            checks=failover_checks,
        ),
        Row(
            figure=f"8. Fleet failover after SIGKILL of the holder, p99 of {kills}",
            measured=round(p99, 3),
            unit="s",
            baseline=LEASE_TTL,
            ratio=f"{p99 / LEASE_TTL:.2f} of the lease",
            target=f"<= {bound:.2f} s (lease + one retry + one reconnect)",
            passed=p99 <= bound,
            checks=failover_checks,
        ),
    ]
    details = (
        "### 8. Fleet\n\n"
        f"Throughput: {n} flooded notifications from the socket to a worker's read and ack "
        f"through Redis (the holder appends one Lua call per item): {fleet:,.0f} msg/s; the "
        f"same flood read straight from the client's buffer: {single:,.0f} msg/s "
        f"({fleet / single:.3f}).\n\n"
        f"Two FleetWorker processes, lease {LEASE_TTL:g} s (renewed every third), a real "
        f"Redis-compatible server and the local MoltCities server; the holder SIGKILLed "
        f"{kills} times. Seconds from the kill to the other worker holding with its sockets "
        f"up: {', '.join(f'{t:.2f}' for t in times)}. Nobody may take over before the dead "
        "holder's key expires, so the floor is the lease left at the kill."
    )
    return Section(rows=rows, details=details)


async def _worker(base: str, redis_url: str, name: str, key: str) -> None:
    from langchain_moltcities import ClientSettings
    from langchain_moltcities.fleet.stream import StreamEntry
    from langchain_moltcities.fleet.worker import FleetWorker

    async def handle(entry: StreamEntry) -> None:
        return None

    def holding(on: bool) -> None:
        print(f"holder {'on' if on else 'off'} {now_ns()}", flush=True)

    settings = ClientSettings(backoff_base=0.05, backoff_cap=0.5)
    worker = FleetWorker(
        key, base, redis_url, "a0", handle, name=name, lease_ttl=LEASE_TTL,
        settings=settings, on_holding=holding,
    )  # fmt: skip
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await worker.run(stop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("role", choices=["worker"])
    parser.add_argument("base")
    parser.add_argument("redis_url")
    parser.add_argument("name")
    args = parser.parse_args()
    key = sys.stdin.readline().strip()
    asyncio.run(_worker(args.base, args.redis_url, args.name, key))


if __name__ == "__main__":
    main()
