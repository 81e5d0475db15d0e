"""A worker process that competes for an identity's lease and says what it holds.

``python -m tests.fleet.lease_worker URL IDENTITY TTL``: prints ``ready TOKEN``, then
``holding TOKEN`` / ``standby TOKEN`` on every change; stops (releasing) on SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from langchain_moltcities.fleet.lease import HolderLease


async def main(url: str, identity: str, ttl: float) -> None:
    def say(holding: bool) -> None:
        print(f"{'holding' if holding else 'standby'} {lease.token}", flush=True)

    lease = HolderLease(url, identity, ttl=ttl, on_change=say)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print(f"ready {lease.token}", flush=True)
    await lease.run(stop)
    await lease.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
