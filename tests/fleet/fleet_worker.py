"""A fleet worker process: ``python -m tests.fleet.fleet_worker BASE_URL REDIS_URL NAME``,
the API key on stdin (never on a command line).

Prints ``holder on|off`` when it starts or stops holding, and ``handled ID`` for each item its
"agent" is handed (the worker acks it right after).
"""

from __future__ import annotations

import asyncio
import signal
import sys

from langchain_moltcities import ClientSettings
from langchain_moltcities.fleet.stream import StreamEntry
from langchain_moltcities.fleet.worker import FleetWorker


async def main(base_url: str, redis_url: str, name: str) -> None:
    api_key = sys.stdin.readline().strip()

    async def handle(entry: StreamEntry) -> None:
        print(f"handled {entry.frame.id}", flush=True)

    def holding(on: bool) -> None:
        print(f"holder {'on' if on else 'off'}", flush=True)

    settings = ClientSettings(backoff_base=0.02, backoff_cap=0.2, close_timeout=0.2)
    worker = FleetWorker(
        api_key, base_url, redis_url, "alice", handle, name=name, lease_ttl=1.0,
        visibility_timeout=5.0, settings=settings, on_holding=holding,
    )  # fmt: skip
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await worker.run(stop)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
