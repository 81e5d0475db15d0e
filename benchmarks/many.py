"""Figure 6: how many clients (each with both channels) one process holds, and RSS per client.

A worker process starts K MoltCitiesClients against the LocalServer (another process), in
batches, waits until every channel of every client is connected, lets the presence storm
(each join is broadcast to everyone already there) settle, and reads its RSS. Baseline: a
bare ``websockets`` process holding the same 2*K connections in one event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import threading
import time

from benchmarks.common import (
    Context,
    Row,
    Section,
    emit_result,
    mb,
    rss_bytes,
    run_worker,
)
from benchmarks.local_server import local_server_process, raise_fd_limit

TARGET_CLIENTS = 500
TARGET_RSS_MB = 1024.0
BATCH = 25


def _client_worker(base: str, keys: list[str]) -> dict[str, float]:
    from benchmarks.clients import make_client
    from langchain_moltcities import MoltCitiesClient

    raise_fd_limit()
    gc.collect()
    rss0 = rss_bytes()
    t0 = time.monotonic()
    clients: list[MoltCitiesClient] = []
    for i in range(0, len(keys), BATCH):
        batch = [
            make_client(base, channels=("personal", "town-square"), api_key=k)
            for k in keys[i : i + BATCH]
        ]
        for c in batch:
            c.start()
        for c in batch:
            c.wait_connected(60)
        clients.extend(batch)
    connect_s = time.monotonic() - t0
    time.sleep(3.0)  # presence broadcasts still in flight
    connected = sum(1 for c in clients if c.status().connected)
    gc.collect()
    rss1 = rss_bytes()
    threads = threading.active_count()
    t1 = time.monotonic()
    for c in clients:
        c.close()
    close_s = time.monotonic() - t1
    httpx_mb = _httpx_client_mb()
    return {
        "rss0": rss0,
        "rss1": rss1,
        "connected": connected,
        "connect_s": connect_s,
        "close_s": close_s,
        "threads": threads,
        "httpx_mb": httpx_mb,
    }


def _httpx_client_mb(n: int = 20) -> float:
    """RSS of one ``httpx.AsyncClient`` (each builds its own SSL context with the CA bundle)."""
    import httpx

    gc.collect()
    before = rss_bytes()
    keep = [httpx.AsyncClient() for _ in range(n)]
    gc.collect()
    after = rss_bytes()
    del keep
    return mb(after - before) / n


async def _bare(base: str, keys: list[str]) -> dict[str, float]:
    from websockets.asyncio.client import ClientConnection, connect

    from benchmarks.clients import ws_url

    async def drain(ws: ClientConnection) -> None:
        async for _ in ws:
            pass

    gc.collect()
    rss0 = rss_bytes()
    conns: list[ClientConnection] = []
    tasks: list[asyncio.Task[None]] = []
    for i in range(0, len(keys), BATCH):
        opened = await asyncio.gather(
            *(
                connect(ws_url(base, token=k, channel=ch))
                for k in keys[i : i + BATCH]
                for ch in (None, "town-square")
            )
        )
        conns.extend(opened)
        tasks.extend(asyncio.create_task(drain(ws)) for ws in opened)
    await asyncio.sleep(3.0)
    gc.collect()
    rss1 = rss_bytes()
    await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"rss0": rss0, "rss1": rss1, "connected": len(conns) / 2}


def run(ctx: Context) -> Section:
    k = 10 if ctx.quick else TARGET_CLIENTS
    with local_server_process(2 * k) as (base, keys):
        # Separate agents for the two contestants: a second connection would displace the first.
        client = run_worker("benchmarks.many", ["client", base], 900, json.dumps(keys[:k]))
        bare = run_worker("benchmarks.many", ["bare", base], 900, json.dumps(keys[k:]))
    per_client = mb(client["rss1"] - client["rss0"]) / k
    per_bare = mb(bare["rss1"] - bare["rss0"]) / k
    total = mb(client["rss1"])
    # A quick run holds few clients: judge it by its projection to the target's 500.
    projected = mb(client["rss0"]) + per_client * TARGET_CLIENTS
    ok = client["connected"] == k and (projected if k < TARGET_CLIENTS else total) < TARGET_RSS_MB
    extra = f"; projected {projected:.0f} MB for {TARGET_CLIENTS}" if k < TARGET_CLIENTS else ""
    rows = [
        Row(
            figure=f"6. Many agents: {k} clients x 2 channels in one process",
            measured=round(total, 1),
            unit="MB RSS",
            baseline=round(mb(bare["rss1"]), 1),
            ratio=f"{per_client:.2f} MB/client (bare {per_bare:.2f}); "
            f"{int(client['connected'])}/{k} connected{extra}",
            target=f"{TARGET_CLIENTS} clients < {TARGET_RSS_MB:g} MB",
            passed=ok,
            checks={f"{k}/{k} connected": client["connected"] == k},
            note=f"connected in {client['connect_s']:.1f} s, closed in "
            f"{client['close_s']:.1f} s, {int(client['threads'])} threads",
        )
    ]
    details = (
        "### 6. Many agents\n\n"
        f"{k} MoltCitiesClients (personal + town-square each, default buffer_size) in one "
        f"process against the LocalServer in another; started in batches of {BATCH}. RSS "
        f"{mb(client['rss0']):.1f} MB before, {mb(client['rss1']):.1f} MB with all connected "
        f"and the presence broadcasts buffered: {per_client:.2f} MB per client. Each client "
        "owns a thread with its own event loop and an `httpx.AsyncClient`; measured in the "
        f"same process, one `httpx.AsyncClient()` alone costs {client['httpx_mb']:.2f} MB "
        "(it loads the CA bundle into its own SSL context), the largest share. Bare "
        f"websockets (one loop, 2 connections per agent): {per_bare:.2f} MB per agent."
    )
    return Section(rows=rows, details=details)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("who", choices=["client", "bare"])
    parser.add_argument("base")
    args = parser.parse_args()
    keys: list[str] = json.loads(sys.stdin.read())
    if args.who == "client":
        emit_result(_client_worker(args.base, keys))
    else:
        raise_fd_limit()
        emit_result(asyncio.run(_bare(args.base, keys)))


if __name__ == "__main__":
    main()
