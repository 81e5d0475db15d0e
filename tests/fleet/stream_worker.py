"""A worker process reading one identity's stream through the consumer group.

``python -m tests.fleet.stream_worker URL CONSUMER VISIBILITY [hang]``: prints ``got ID
claimed|new`` per entry read and ``acked ID`` once acked; ``hang`` reads and never acks (a
worker that dies mid-turn, once the test kills it).
"""

from __future__ import annotations

import asyncio
import sys

from langchain_moltcities.fleet.stream import WorkStream


async def main(url: str, consumer: str, visibility: float, hang: bool) -> None:
    stream = WorkStream(url, "agent_x", visibility_timeout=visibility)
    print("ready", flush=True)
    while True:
        entries = await stream.read(consumer, count=5, block=0.2)
        for e in entries:
            print(f"got {e.frame.id} {'claimed' if e.claimed else 'new'}", flush=True)
        if hang:
            if entries:
                await asyncio.sleep(3600)
            continue
        if await stream.ack(entries) != len(entries):
            print("ack-mismatch", flush=True)
        for e in entries:
            print(f"acked {e.frame.id}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), "hang" in sys.argv[4:]))
