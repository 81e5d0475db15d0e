"""The two contestants: a bare ``websockets`` client (json.loads only) and MoltCitiesClient."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import connect

from benchmarks.common import collect_garbage, now_ns
from langchain_moltcities import ClientSettings, LoopRunner, MoltCitiesClient
from langchain_moltcities.protocol import DOCUMENTED_EVENT_TYPES, NotificationFrame

BENCH_KEY = "mc_" + "0" * 64  # the flood server accepts any key
WS_PATH = "/api/notifications/connect"
MAX_SIZE = 1 << 20  # the same inbound limit as MoltCitiesClient's default


def ws_url(http_url: str, *, token: str = BENCH_KEY, channel: str | None = None) -> str:
    url = http_url.replace("http://", "ws://", 1).rstrip("/") + f"{WS_PATH}?token={token}"
    return url + (f"&channel={channel}" if channel else "")


# ---------------------------------------------------------------------- bare websockets client


async def _bare_flood(url: str, n: int) -> tuple[float, float]:
    async with connect(url, max_size=MAX_SIZE) as ws:
        await ws.recv()  # connected
        t0, c0 = time.perf_counter(), time.process_time()
        await ws.send(json.dumps({"type": "subscribe", "events": ["inbox.message"]}))
        count = 0
        async for raw in ws:
            if json.loads(raw).get("type") == "notification":
                count += 1
                if count == n:
                    return time.perf_counter() - t0, time.process_time() - c0
    raise RuntimeError(f"the bare client got {count} of {n} notifications")


def bare_flood_seconds(base: str, n: int) -> float:
    """Seconds for a bare client to receive and json.loads ``n`` flooded notifications."""
    return asyncio.run(_bare_flood(ws_url(f"{base}/flood/{n}"), n))[0]


def bare_flood_cpu(base: str, n: int) -> float:
    """CPU seconds (this process) the bare client spends on ``n`` flooded notifications."""
    return asyncio.run(_bare_flood(ws_url(f"{base}/flood/{n}"), n))[1]


async def _bare_latencies(url: str, n: int) -> list[float]:
    lat: list[float] = []
    async with connect(url, max_size=MAX_SIZE) as ws:
        await ws.recv()
        collect_garbage()  # start from a collected heap, as the MoltCitiesClient run does
        await ws.send(json.dumps({"type": "subscribe", "events": ["mention"]}))
        async for raw in ws:
            now = now_ns()
            frame = json.loads(raw)
            if frame.get("type") == "notification":
                lat.append((now - frame["data"]["sent_ns"]) / 1e6)
                if len(lat) == n:
                    return lat
    raise RuntimeError(f"the bare client got {len(lat)} of {n} mentions")


def bare_latencies_ms(base: str, n: int, interval_us: int) -> list[float]:
    """Receive latency (server send to json.loads done) of ``n`` paced mentions, in ms."""
    return asyncio.run(_bare_latencies(ws_url(f"{base}/mentions/{n}/{interval_us}"), n))


# ---------------------------------------------------------------------- MoltCitiesClient


@dataclass
class MentionProbe:
    """Records each mention's wake latency and signals when ``expected`` have arrived."""

    expected: int
    latencies_ms: list[float] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    done_at: float = 0.0
    done_cpu: float = 0.0
    on_first: Callable[[], None] | None = None
    on_done: Callable[[], None] | None = None

    def record(self, frame: NotificationFrame) -> None:
        now = now_ns()
        sent = frame.data.get("sent_ns")
        if isinstance(sent, int):
            self.latencies_ms.append((now - sent) / 1e6)
        if len(self.latencies_ms) == 1 and self.on_first is not None:
            self.on_first()
        if len(self.latencies_ms) >= self.expected and not self.done.is_set():
            self.done_at = time.perf_counter()
            self.done_cpu = time.process_time()
            if self.on_done is not None:
                self.on_done()
            self.done.set()

    async def async_callback(self, frame: NotificationFrame) -> None:
        self.record(frame)

    def sync_callback(self, frame: NotificationFrame) -> None:
        self.record(frame)


def make_client(
    base: str,
    *,
    channels: Sequence[str] = ("personal",),
    buffer_size: int = 1000,
    on_mention: Any = None,
    api_key: str = BENCH_KEY,
    settings: ClientSettings | None = None,
    state: str | None = None,
    runner: LoopRunner | None = None,
) -> MoltCitiesClient:
    return MoltCitiesClient(
        api_key=api_key,
        base_url=base,
        channels=channels,
        buffer_size=buffer_size,
        on_mention=on_mention,
        settings=settings,
        state=state,
        runner=runner,
    )


def start_connected(client: MoltCitiesClient, timeout: float = 30.0) -> MoltCitiesClient:
    client.start()
    if not client.wait_connected(timeout):
        status = client.status()
        client.close()
        raise RuntimeError(f"MoltCitiesClient did not connect: {status.model_dump()}")
    return client


def client_flood_seconds(
    base: str,
    n: int,
    *,
    buffer_size: int = 1000,
    on_first: Callable[[], None] | None = None,
    on_done: Callable[[], None] | None = None,
    state: str | None = None,
) -> tuple[float, dict[str, float]]:
    """Seconds for MoltCitiesClient to buffer ``n`` flooded notifications, and its counters
    (with ``cpu_s``: CPU seconds of this process meanwhile, every thread).

    The flood's first and last frames are mentions: ``on_mention`` for the last marks the end
    (frames are handled in order), so the measuring thread never competes for the GIL.
    ``on_first``/``on_done`` run on the client's loop thread (the profiler hooks in there).
    ``state``: a SQLite state file (restart-safe agents), written behind as the agent runs.
    """
    probe = MentionProbe(expected=2, on_first=on_first, on_done=on_done)
    client = make_client(
        f"{base}/flood/{n}", buffer_size=buffer_size, on_mention=probe.async_callback, state=state
    )
    with start_connected(client):
        t0, c0 = time.perf_counter(), time.process_time()
        # The server's "go"; every type the flood sends, since the client filters by it.
        client.set_subscriptions(list(DOCUMENTED_EVENT_TYPES))
        if not probe.done.wait(600):
            raise RuntimeError("MoltCitiesClient never saw the flood's last frame")
        elapsed = probe.done_at - t0
        personal = client.status().channels["personal"]
    return elapsed, {
        "received": personal.received,
        "duplicates_dropped": personal.duplicates_dropped,
        "overflow_dropped": personal.overflow_dropped,
        "pending": personal.pending,
        "held_bytes": personal.held_bytes,
        "cpu_s": probe.done_cpu - c0,
    }
