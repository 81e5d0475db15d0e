"""Figure 3: memory bound while a flood pours into a buffer of 1,000 that nobody reads.

Each contestant runs in a fresh process (clean RSS); a thread samples RSS every 50 ms. Growth
is peak RSS minus RSS once connected; "flat" compares the peak with RSS when 10 % of the flood
had arrived (long after the 1,000-item buffer filled). A bare client receiving the same flood
(json.loads, nothing kept) is the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import threading
import time

from benchmarks.common import (
    Context,
    Row,
    RssSampler,
    Section,
    emit_result,
    mb,
    quiet_overflow_warnings,
    rss_bytes,
    run_worker,
)
from langchain_moltcities.protocol import DOCUMENTED_EVENT_TYPES

TARGET_GROWTH_MB = 30.0
TARGET_DRIFT_MB = 2.0
BUFFER = 1_000


def _rss_at_fraction(samples: list[tuple[float, int]], t0: float, t1: float, f: float) -> int:
    cut = t0 + (t1 - t0) * f
    after = [r for t, r in samples if t >= cut]
    return after[0] if after else samples[-1][1]


def _client_worker(base: str, n: int) -> dict[str, object]:
    from benchmarks.clients import MentionProbe, make_client, start_connected

    probe = MentionProbe(expected=2)
    client = make_client(f"{base}/flood/{n}", buffer_size=BUFFER, on_mention=probe.async_callback)
    with start_connected(client):
        time.sleep(0.3)  # let GET /api/me and first-use allocations settle
        gc.collect()
        baseline = rss_bytes()
        sampler = RssSampler(0.05).start()
        t0 = time.monotonic()
        client.set_subscriptions(list(DOCUMENTED_EVENT_TYPES))  # the go: every flood type
        if not probe.done.wait(1800):
            raise RuntimeError("the flood never finished")
        t1 = time.monotonic()
        samples = sampler.stop()
        st = client.status().channels["personal"]
    return {
        "baseline": baseline,
        "peak": max(r for _, r in samples),
        "at10": _rss_at_fraction(samples, t0, t1, 0.10),
        "at50": _rss_at_fraction(samples, t0, t1, 0.50),
        "end": samples[-1][1],
        "seconds": t1 - t0,
        "received": st.received,
        "overflow": st.overflow_dropped,
        "pending": st.pending,
    }


async def _bare(url: str, n: int, ready: threading.Event, box: dict[str, object]) -> None:
    from websockets.asyncio.client import connect

    async with connect(url, max_size=1 << 20) as ws:
        await ws.recv()
        await asyncio.sleep(0.3)
        gc.collect()
        box["baseline"] = rss_bytes()
        ready.set()
        await ws.send(json.dumps({"type": "subscribe", "events": ["inbox.message"]}))
        count = 0
        async for raw in ws:
            if json.loads(raw).get("type") == "notification":
                count += 1
                if count == n:
                    return


def _bare_worker(base: str, n: int) -> dict[str, object]:
    from benchmarks.clients import ws_url

    box: dict[str, object] = {}
    ready = threading.Event()
    sampler = RssSampler(0.05).start()
    t0 = time.monotonic()
    asyncio.run(_bare(ws_url(f"{base}/flood/{n}"), n, ready, box))
    samples = sampler.stop()
    return {"baseline": box["baseline"], "peak": max(r for _, r in samples), "t0": t0}


def run(ctx: Context) -> Section:
    n = 20_000 if ctx.quick else 1_000_000
    client = run_worker("benchmarks.memory", ["client", ctx.flood_url, str(n)], timeout=1800)
    bare = run_worker("benchmarks.memory", ["bare", ctx.flood_url, str(n)], timeout=1800)
    growth = mb(int(client["peak"]) - int(client["baseline"]))
    drift = mb(int(client["peak"]) - int(client["at10"]))
    bare_growth = mb(int(bare["peak"]) - int(bare["baseline"]))
    kept_all = client["received"] == n and client["pending"] == BUFFER
    rows = [
        Row(
            figure="3. Memory: RSS growth, 1 M notifications into an unread buffer of 1,000"
            if not ctx.quick
            else f"3. Memory: RSS growth, {n} notifications into an unread buffer of 1,000",
            measured=round(growth, 1),
            unit="MB",
            baseline=round(bare_growth, 1),
            ratio=f"growth {growth:.1f} MB; after 10 % of the flood +{drift:.1f} MB",
            target=f"< {TARGET_GROWTH_MB:g} MB, flat (< {TARGET_DRIFT_MB:g} MB after 10 %)",
            passed=growth < TARGET_GROWTH_MB and drift < TARGET_DRIFT_MB and kept_all,
            checks={
                "every notification received": client["received"] == n,
                "buffer full, the rest dropped and counted": client["pending"] == BUFFER
                and client["overflow"] == n - BUFFER,
            },
            note=f"{n / float(client['seconds']):.0f} msg/s; overflow dropped "
            f"{client['overflow']}, pending {client['pending']}",
        )
    ]
    details = "\n".join(
        [
            "### 3. Memory bound",
            "",
            f"{n} notifications flooded into MoltCitiesClient(buffer_size={BUFFER}) that nobody "
            "reads, in a fresh process. RSS (MB): "
            f"connected {mb(int(client['baseline'])):.1f}, at 10 % "
            f"{mb(int(client['at10'])):.1f}, at 50 % {mb(int(client['at50'])):.1f}, "
            f"peak {mb(int(client['peak'])):.1f}, end {mb(int(client['end'])):.1f}. "
            f"Counters: received {client['received']}, overflow dropped {client['overflow']}, "
            f"pending {client['pending']}. Bare client (json.loads only) on the same flood: "
            f"growth {bare_growth:.1f} MB.",
        ]
    )
    return Section(rows=rows, details=details)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("who", choices=["client", "bare"])
    parser.add_argument("base")
    parser.add_argument("n", type=int)
    args = parser.parse_args()
    quiet_overflow_warnings()
    worker = _client_worker if args.who == "client" else _bare_worker
    emit_result(worker(args.base, args.n))


if __name__ == "__main__":
    main()
