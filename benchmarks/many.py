"""Figure 6: many clients (each with both channels) on one shared loop thread.

A worker process starts K MoltCitiesClients on one shared ``LoopRunner`` against the
LocalServer in live mode (another process; it never answers a client's close frame, like the
live server), in batches, waits until every channel of every client is connected, lets the
presence storm (each join is broadcast to everyone already there) settle, reads its RSS and
thread count, then closes them all at once. Baseline: a bare ``websockets`` process holding
the same 2*K connections in one event loop, connected in the same batches.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import threading
import time
from typing import Any

from benchmarks.common import (
    Context,
    GcPauses,
    Row,
    Section,
    emit_result,
    mb,
    rss_bytes,
    run_worker,
)
from benchmarks.local_server import local_server_process, raise_fd_limit

TARGET_CLIENTS = 500
TARGET_RSS_MB = 250.0
TARGET_THREADS = 3
TARGET_CONNECT_RATIO = 3.0
TARGET_CLOSE_S = 2.0
BATCH = 25
CLOSE_TIMEOUT = 1.0  # the client's default close_timeout; the bare baseline uses it too


def _client_worker(base: str, keys: list[str]) -> dict[str, float]:
    from benchmarks.clients import make_client
    from langchain_moltcities import LoopRunner, MoltCitiesClient, close_all, start_all

    raise_fd_limit()
    gc.collect()
    rss0 = rss_bytes()
    runner = LoopRunner()
    called: list[str] = []  # the worker thread of each sync on_mention call

    def on_mention(frame: object) -> None:  # sync: runs on the runner's shared worker pool
        called.append(threading.current_thread().name)

    clients: list[MoltCitiesClient] = [
        make_client(
            base,
            channels=("personal", "town-square"),
            api_key=k,
            runner=runner,
            on_mention=on_mention,
        )
        for k in keys
    ]
    t0 = time.monotonic()
    for i in range(0, len(clients), BATCH):
        start_all(clients[i : i + BATCH], wait=60)
    connect_s = time.monotonic() - t0
    time.sleep(3.0)  # presence broadcasts still in flight
    connected = sum(1 for c in clients if c.status().connected)
    gc.collect()
    rss1 = rss_bytes()
    threads = threading.active_count()
    thread_names = sorted({t.name for t in threading.enumerate()})
    mentioned, mention_threads, mention_s = _mention_everyone(clients, called)
    gc.collect()
    with GcPauses(threshold_ms=50) as pauses:
        t1, c1 = time.monotonic(), time.process_time()
        close_all(clients)
        close_s, close_cpu = time.monotonic() - t1, time.process_time() - c1
    runner.close()
    left = threading.active_count()
    httpx_mb = _httpx_client_mb()
    return {
        "rss0": rss0,
        "rss1": rss1,
        "connected": connected,
        "connect_s": connect_s,
        "close_s": close_s,
        "close_cpu": close_cpu,
        "close_gc_s": sum(ms for _, ms in pauses.pauses) / 1000,
        "threads": threads,
        "thread_names": ", ".join(thread_names),  # type: ignore[dict-item]
        "threads_after_close": left,
        "httpx_mb": httpx_mb,
        "mentioned": mentioned,
        "mention_calls": len(called),
        "mention_threads": mention_threads,
        "mention_workers": len(set(called)),
        "mention_s": mention_s,
    }


def _mention_everyone(clients: list[Any], called: list[str]) -> tuple[int, int, float]:
    """Every agent (handles a0, a1, ... in key order) @mentioned once in Town Square, a few
    dozen per post (chat is capped at 500 characters), each post by an agent it doesn't
    mention; waits for every sync callback. (mentioned, peak threads, seconds)."""
    handles = [f"a{i}" for i in range(len(clients))]
    groups: list[list[str]] = [[]]
    for h in handles:
        # Half of them at most per post: each is posted by an agent it doesn't mention.
        full = len(groups[-1]) >= max(1, len(handles) // 2)
        if full or len(" ".join(f"@{x}" for x in [*groups[-1], h])) > 480:
            groups.append([])
        groups[-1].append(h)
    t0 = time.monotonic()
    peak = threading.active_count()
    for group in groups:
        poster = clients[(handles.index(group[-1]) + 1) % len(clients)]
        poster.post_chat(" ".join(f"@{h}" for h in group))
    deadline = time.monotonic() + 60
    while len(called) < len(handles) and time.monotonic() < deadline:
        peak = max(peak, threading.active_count())
        time.sleep(0.005)
    peak = max(peak, threading.active_count())
    return len(handles), peak, time.monotonic() - t0


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
    t0 = time.monotonic()
    for i in range(0, len(keys), BATCH):
        opened = await asyncio.gather(
            *(
                connect(ws_url(base, token=k, channel=ch), close_timeout=CLOSE_TIMEOUT)
                for k in keys[i : i + BATCH]
                for ch in (None, "town-square")
            )
        )
        conns.extend(opened)
        tasks.extend(asyncio.create_task(drain(ws)) for ws in opened)
    connect_s = time.monotonic() - t0
    await asyncio.sleep(3.0)
    gc.collect()
    rss1 = rss_bytes()
    t1 = time.monotonic()
    await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    close_s = time.monotonic() - t1
    return {
        "rss0": rss0,
        "rss1": rss1,
        "connected": len(conns) / 2,
        "connect_s": connect_s,
        "close_s": close_s,
    }


def run(ctx: Context) -> Section:
    k = 10 if ctx.quick else TARGET_CLIENTS
    with local_server_process(2 * k, mode="live") as (base, keys):
        # Separate agents for the two contestants: a second connection would displace the first.
        client = run_worker("benchmarks.many", ["client", base], 900, json.dumps(keys[:k]))
        bare = run_worker("benchmarks.many", ["bare", base], 900, json.dumps(keys[k:]))
    per_client = mb(client["rss1"] - client["rss0"]) / k
    per_bare = mb(bare["rss1"] - bare["rss0"]) / k
    total = mb(client["rss1"])
    # A quick run holds few clients: judge it by its projection to the target's 500.
    projected = mb(client["rss0"]) + per_client * TARGET_CLIENTS
    threads = int(client["threads"])
    all_in = client["connected"] == k
    rss_ok = (projected if k < TARGET_CLIENTS else total) < TARGET_RSS_MB
    extra = f"; projected {projected:.0f} MB for {TARGET_CLIENTS}" if k < TARGET_CLIENTS else ""
    connect_ratio = client["connect_s"] / max(bare["connect_s"], 1e-9)
    rows = [
        Row(
            figure=f"6. Many agents: {k} clients x 2 channels on one shared loop",
            measured=round(total, 1),
            unit="MB RSS",
            baseline=round(mb(bare["rss1"]), 1),
            ratio=f"{per_client:.2f} MB/client (bare {per_bare:.2f}); "
            f"{int(client['connected'])}/{k} connected; {threads} threads{extra}",
            target=f"{TARGET_CLIENTS} clients < {TARGET_RSS_MB:g} MB, <= {TARGET_THREADS} threads",
            passed=all_in and rss_ok and threads <= TARGET_THREADS,
            checks={f"{k}/{k} connected": client["connected"] == k},
            note=f"threads: {client['thread_names']}",
        ),
        Row(
            figure=f"6b. Many agents: time until all {k} clients are connected",
            measured=round(client["connect_s"], 2),
            unit="s",
            baseline=round(bare["connect_s"], 2),
            ratio=f"{connect_ratio:.2f}x bare",
            target=f"<= {TARGET_CONNECT_RATIO:g}x bare",
            passed=all_in and connect_ratio <= TARGET_CONNECT_RATIO,
            checks={f"{k}/{k} connected": client["connected"] == k},
            note=f"batches of {BATCH} agents (both contestants)",
        ),
        Row(
            figure=f"6c. Many agents: time to close all {k} clients (server never answers close)",
            measured=round(client["close_s"], 2),
            unit="s",
            baseline=round(bare["close_s"], 2),
            ratio=f"{client['close_s'] / max(bare['close_s'], 1e-9):.2f}x bare; "
            f"{int(client['threads_after_close'])} thread(s) left after closing",
            target=f"<= {TARGET_CLOSE_S:g} s",
            passed=client["close_s"] <= TARGET_CLOSE_S and client["threads_after_close"] <= 1,
            checks={"no client thread left": client["threads_after_close"] <= 1},
            note=f"close_all(), LocalServer in live mode; {client['close_cpu']:.2f} s CPU; "
            f"garbage-collector pauses {client['close_gc_s']:.2f} s (wall); bare: every "
            f"socket's close() at once, close_timeout {CLOSE_TIMEOUT:g} s",
        ),
        Row(
            figure=f"6d. Many agents: threads while {k} sync on_mention callbacks run",
            measured=int(client["mention_threads"]),
            unit="threads",
            baseline=threads,  # the same clients before any callback ran
            ratio=f"{int(client['mention_calls'])}/{int(client['mentioned'])} callbacks ran "
            f"in {client['mention_s']:.2f} s on {int(client['mention_workers'])} worker(s)",
            target=f"<= {TARGET_THREADS} threads",
            passed=client["mention_threads"] <= TARGET_THREADS
            and client["mention_calls"] == client["mentioned"],
            checks={"every callback ran": client["mention_calls"] == client["mentioned"]},
            note="every agent @mentioned once in Town Square; baseline: threads before any "
            "callback; the runner's shared, elastic callback pool (before: a 4-thread pool per "
            "client)",
        ),
    ]
    details = (
        "### 6. Many agents\n\n"
        f"{k} MoltCitiesClients (personal + town-square each, default buffer_size) on one "
        "shared `LoopRunner` in one process, against the LocalServer in live mode in another "
        "(it never answers a client's close frame); started with `start_all` in batches of "
        f"{BATCH}, closed with one `close_all`. RSS {mb(client['rss0']):.1f} MB before, "
        f"{mb(client['rss1']):.1f} MB with all connected and the presence broadcasts "
        f"buffered: {per_client:.2f} MB per client. Connected in {client['connect_s']:.2f} s "
        f"(bare {bare['connect_s']:.2f} s), closed in {client['close_s']:.2f} s (bare "
        f"{bare['close_s']:.2f} s, same close timeout). Threads while "
        f"running: {threads} ({client['thread_names']}). One `httpx.AsyncClient()` alone "
        f"costs {client['httpx_mb']:.2f} MB in the same process. Bare websockets (one loop, "
        f"2 connections per agent): {per_bare:.2f} MB per agent."
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
