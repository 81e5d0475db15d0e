"""Figure 2: mention wake latency, server send to ``on_mention`` start, beside a bare client.

The flood server paces mentions (one every INTERVAL_US) and stamps each with its send time
(CLOCK_MONOTONIC, system-wide on Linux, so it compares across processes). The bare client's
figure is send to ``json.loads`` done. Both an async callback (awaited on the client's loop)
and a sync one (run in the client's worker thread) are measured.
"""

from __future__ import annotations

import gc
import time

from benchmarks.clients import (
    MentionProbe,
    bare_latencies_ms,
    make_client,
    start_connected,
)
from benchmarks.common import Context, Row, Section, median, percentile

TARGET_EXTRA_P99_MS = 2.0
WARMUP = 10  # the first mentions pay for first-use costs (thread pool start, caches)


def client_latencies_ms(base: str, n: int, interval_us: int, *, sync: bool) -> list[float]:
    probe = MentionProbe(expected=n)
    callback = probe.sync_callback if sync else probe.async_callback
    client = make_client(
        f"{base}/mentions/{n}/{interval_us}", buffer_size=max(1000, n), on_mention=callback
    )
    with start_connected(client):
        client.set_subscriptions(["mention"])  # the server's "go"
        if not probe.done.wait(60 + n * interval_us / 1e6 * 3):
            raise RuntimeError(f"on_mention ran {len(probe.latencies_ms)} of {n} times")
    return probe.latencies_ms


class GcPauses:
    """Records CPython's collector pauses (they stop every thread) while a contestant runs."""

    def __init__(self, threshold_ms: float = 5.0) -> None:
        self.threshold_ms = threshold_ms
        self.pauses: list[tuple[int, float]] = []
        self._t0 = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        elif (ms := (time.perf_counter() - self._t0) * 1000) >= self.threshold_ms:
            self.pauses.append((info["generation"], ms))

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def describe(self) -> str:
        return ", ".join(f"gen{g} {ms:.0f} ms" for g, ms in self.pauses) or "none"


def run(ctx: Context) -> Section:
    n = 60 if ctx.quick else 1_000 + WARMUP
    interval_us = 1_000 if ctx.quick else 3_000
    with GcPauses() as gc_bare:
        bare = bare_latencies_ms(ctx.flood_url, n, interval_us)[WARMUP:]
    with GcPauses() as gc_async:
        async_cb = client_latencies_ms(ctx.flood_url, n, interval_us, sync=False)[WARMUP:]
    with GcPauses() as gc_sync:
        sync_cb = client_latencies_ms(ctx.flood_url, n, interval_us, sync=True)[WARMUP:]
    b50, b99 = median(bare), percentile(bare, 99)
    rows: list[Row] = []
    for label, lat in (("async on_mention", async_cb), ("sync on_mention", sync_cb)):
        p50, p99 = median(lat), percentile(lat, 99)
        rows.append(
            Row(
                figure=f"2. Mention wake latency p99 ({label})",
                measured=round(p99, 3),
                unit="ms",
                baseline=round(b99, 3),
                ratio=f"+{p99 - b99:.3f} ms (p50 {p50:.3f} vs {b50:.3f})",
                target=f"p99 <= bare + {TARGET_EXTRA_P99_MS:g} ms",
                passed=p99 - b99 <= TARGET_EXTRA_P99_MS,
                note=f"{len(lat)} mentions, one per {interval_us / 1000:g} ms",
            )
        )
    details = "\n".join(
        [
            "### 2. Mention wake latency",
            "",
            f"{len(bare)} mentions per contestant (after {WARMUP} warm-up), paced one per "
            f"{interval_us / 1000:g} ms; server send timestamp in the frame to the callback's "
            "first line (bare: to `json.loads` done).",
            "",
            "| contestant | p50 ms | p90 ms | p99 ms | max ms | GC pauses >= 5 ms during run |",
            "| --- | --- | --- | --- | --- | --- |",
            *(
                f"| {name} | {median(v):.3f} | {percentile(v, 90):.3f} | "
                f"{percentile(v, 99):.3f} | {max(v):.3f} | {pauses.describe()} |"
                for name, v, pauses in (
                    ("bare websockets (receive)", bare, gc_bare),
                    ("MoltCitiesClient, async on_mention", async_cb, gc_async),
                    ("MoltCitiesClient, sync on_mention (worker thread)", sync_cb, gc_sync),
                )
            ),
            "",
            "A full (gen2) collection stops every thread of the process; mentions arriving "
            "meanwhile queue up, so one pause of P ms delays about P/interval mentions and can "
            "decide the p99 by itself. The client allocates more per message than the bare "
            "client, so it triggers collections more often.",
        ]
    )
    return Section(rows=rows, details=details)
