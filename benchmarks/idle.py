"""Figure 5: CPU time of a connected, idle client (both channels) over a quiet minute.

Each contestant runs in a fresh process against the LocalServer (another process) with
default settings; the figure is the whole process's user+system CPU time while the main
thread sleeps. The baseline is a bare ``websockets`` client holding the same two channels.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from benchmarks.common import Context, Row, Section, cpu_seconds, emit_result, run_worker
from benchmarks.local_server import local_server_process

TARGET_CPU_FRACTION = 0.001  # 0.1 % of one core: 60 ms per minute


def _client_worker(base: str, key: str, seconds: float) -> dict[str, float]:
    from benchmarks.clients import make_client, start_connected

    client = make_client(base, channels=("personal", "town-square"), api_key=key)
    with start_connected(client):
        time.sleep(1.0)  # connect-time work (GET /api/me, first frames) is not idling
        c0, t0 = cpu_seconds(), time.monotonic()
        time.sleep(seconds)
        c1, t1 = cpu_seconds(), time.monotonic()
        connected = client.status().connected
    return {"cpu": c1 - c0, "wall": t1 - t0, "connected": float(connected)}


async def _bare(base: str, key: str, seconds: float) -> dict[str, float]:
    from websockets.asyncio.client import connect

    from benchmarks.clients import ws_url

    async with (
        connect(ws_url(base, token=key)) as personal,
        connect(ws_url(base, token=key, channel="town-square")) as town,
    ):
        await personal.recv()
        await town.recv()
        await asyncio.sleep(1.0)
        c0, t0 = cpu_seconds(), time.monotonic()
        await asyncio.sleep(seconds)
        c1, t1 = cpu_seconds(), time.monotonic()
    return {"cpu": c1 - c0, "wall": t1 - t0, "connected": 1.0}


def run(ctx: Context) -> Section:
    seconds = 2.0 if ctx.quick else 60.0
    with local_server_process(2) as (base, keys):
        # Both idle at once (separate processes, each timing only its own CPU): half the wait.
        with ThreadPoolExecutor(2) as pool:
            futures = [
                pool.submit(
                    run_worker, "benchmarks.idle", [who, base, str(seconds)], seconds + 60, key
                )
                for who, key in (("client", keys[0]), ("bare", keys[1]))
            ]
            client, bare = (f.result() for f in futures)
    frac = client["cpu"] / client["wall"]
    rows = [
        Row(
            figure=f"5. Idle CPU, connected client, both channels, {seconds:g} s",
            measured=round(client["cpu"] * 1000, 1),
            unit="ms CPU",
            baseline=round(bare["cpu"] * 1000, 1),
            ratio=f"{frac:.4%} of a core",
            target=f"<= {TARGET_CPU_FRACTION:.1%} of a core (near zero)",
            passed=frac <= TARGET_CPU_FRACTION and client["connected"] == 1.0,
            note="default settings (app ping every 120 s, heartbeat check every 5 s)",
        )
    ]
    details = (
        "### 5. Idle cost\n\n"
        f"Process CPU (user+system, all threads) over {client['wall']:.1f} s of a connected, "
        f"idle MoltCitiesClient: {client['cpu'] * 1000:.1f} ms; bare websockets client with "
        f"the same two connections: {bare['cpu'] * 1000:.1f} ms."
    )
    return Section(rows=rows, details=details)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("who", choices=["client", "bare"])
    parser.add_argument("base")
    parser.add_argument("seconds", type=float)
    args = parser.parse_args()
    key = sys.stdin.read().strip()
    if args.who == "client":
        emit_result(_client_worker(args.base, key, args.seconds))
    else:
        emit_result(asyncio.run(_bare(args.base, key, args.seconds)))


if __name__ == "__main__":
    main()
