"""Figure 5: CPU time of a connected, idle client (both channels) over a quiet window.

Each contestant runs in a fresh process against the LocalServer (another process) with
default settings; the figure is the whole process's user+system CPU time while the main
thread sleeps. The window is longer than ``ping_interval`` (120 s by default), so it holds
the periodic work (each channel's app-level ping and its pong), and the run checks it did.
The baseline is a bare ``websockets`` client holding the same two channels.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from benchmarks.common import Context, Row, Section, cpu_seconds, emit_result, run_worker
from benchmarks.local_server import local_server_process
from langchain_moltcities import ClientSettings, MoltCitiesClient

TARGET_CPU_FRACTION = 0.001  # 0.1 % of one core: 60 ms per minute


def _pongs(client: MoltCitiesClient) -> list[int]:
    return [ch.pongs_received for ch in client.status().channels.values()]


def _client_worker(base: str, key: str, seconds: float, ping_interval: float) -> dict[str, float]:
    from benchmarks.clients import make_client, start_connected

    settings = ClientSettings(ping_interval=ping_interval)
    client = make_client(base, channels=("personal", "town-square"), api_key=key, settings=settings)
    with start_connected(client):
        time.sleep(1.0)  # connect-time work (GET /api/me, first frames) is not idling
        c0, t0, p0 = cpu_seconds(), time.monotonic(), _pongs(client)
        time.sleep(seconds)
        c1, t1, p1 = cpu_seconds(), time.monotonic(), _pongs(client)
        connected = client.status().connected
    pings = min(b - a for a, b in zip(p0, p1, strict=True))
    return {"cpu": c1 - c0, "wall": t1 - t0, "connected": float(connected), "pings": pings}


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
    # The window must hold a ping on each channel: ping_interval plus a margin. A quick run
    # shortens ping_interval to fit its 2 s window.
    default = ClientSettings().ping_interval
    ping_interval = 1.0 if ctx.quick else default
    seconds = 2.0 if ctx.quick else ping_interval + 15.0
    with local_server_process(2) as (base, keys):
        # Both idle at once (separate processes, each timing only its own CPU): half the wait.
        with ThreadPoolExecutor(2) as pool:
            futures = [
                pool.submit(
                    run_worker,
                    "benchmarks.idle",
                    [who, base, str(seconds), str(ping_interval)],
                    seconds + 60,
                    key,
                )
                for who, key in (("client", keys[0]), ("bare", keys[1]))
            ]
            client, bare = (f.result() for f in futures)
    frac = client["cpu"] / client["wall"]
    pinged = client["pings"] >= 1
    settings_note = (
        "default settings"
        if ping_interval == default
        else f"ping_interval {ping_interval:g} s (default {default:g} s)"
    )
    rows = [
        Row(
            figure=f"5. Idle CPU, connected client, both channels, {seconds:g} s",
            measured=round(client["cpu"] * 1000, 1),
            unit="ms CPU",
            baseline=round(bare["cpu"] * 1000, 1),
            ratio=f"{frac:.4%} of a core",
            target=f"<= {TARGET_CPU_FRACTION:.1%} of a core (near zero)",
            passed=frac <= TARGET_CPU_FRACTION and client["connected"] == 1.0 and pinged,
            note=f"{settings_note}; window holds {int(client['pings'])} ping(s) per channel",
            checks={
                "connected throughout": client["connected"] == 1.0,
                "a ping on each channel in the window": pinged,
            },
        )
    ]
    details = (
        "### 5. Idle cost\n\n"
        f"Process CPU (user+system, all threads) over {client['wall']:.1f} s of a connected, "
        f"idle MoltCitiesClient ({settings_note}; pongs received in the window, fewest of the "
        f"two channels: {int(client['pings'])}): {client['cpu'] * 1000:.1f} ms, "
        f"{frac:.4%} of a core; bare websockets client with the same two connections "
        f"(websockets' own keepalive ping every 20 s): {bare['cpu'] * 1000:.1f} ms."
    )
    return Section(rows=rows, details=details)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("who", choices=["client", "bare"])
    parser.add_argument("base")
    parser.add_argument("seconds", type=float)
    parser.add_argument("ping_interval", type=float)
    args = parser.parse_args()
    key = sys.stdin.read().strip()
    if args.who == "client":
        emit_result(_client_worker(args.base, key, args.seconds, args.ping_interval))
    else:
        emit_result(asyncio.run(_bare(args.base, key, args.seconds)))


if __name__ == "__main__":
    main()
