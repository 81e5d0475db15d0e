"""Figure 2: mention wake latency, server send to ``on_mention`` start, beside a bare client.

The flood server paces mentions (one every INTERVAL_US) and stamps each with its send time
(CLOCK_MONOTONIC, system-wide on Linux, so it compares across processes). The bare client's
figure is send to ``json.loads`` done. Both an async callback (awaited on the client's loop)
and a sync one (run in the client's worker thread) are measured.
"""

from __future__ import annotations

import sys

from benchmarks.clients import (
    MentionProbe,
    bare_latencies_ms,
    make_client,
    start_connected,
)
from benchmarks.common import (
    Context,
    GcPauses,
    Row,
    Section,
    collect_garbage,
    emit_result,
    median,
    percentile,
    run_worker,
)

TARGET_EXTRA_P99_MS = 2.0
WARMUP = 10  # the first mentions pay for first-use costs (thread pool start, caches)


def client_latencies_ms(base: str, n: int, interval_us: int, *, sync: bool) -> list[float]:
    probe = MentionProbe(expected=n)
    callback = probe.sync_callback if sync else probe.async_callback
    client = make_client(
        f"{base}/mentions/{n}/{interval_us}", buffer_size=max(1000, n), on_mention=callback
    )
    with start_connected(client):
        collect_garbage()  # start from a collected heap, as the bare client does
        client.set_subscriptions(["mention"])  # the server's "go"
        if not probe.done.wait(60 + n * interval_us / 1e6 * 3):
            raise RuntimeError(f"on_mention ran {len(probe.latencies_ms)} of {n} times")
    return probe.latencies_ms


def _describe_pauses(pauses: list[list[float]]) -> str:
    return ", ".join(f"gen{int(g)} {ms:.0f} ms" for g, ms in pauses) or "none"


def _worker(who: str, base: str, n: int, interval_us: int) -> dict[str, object]:
    with GcPauses() as pauses:
        if who == "bare":
            lat = bare_latencies_ms(base, n, interval_us)
        else:
            lat = client_latencies_ms(base, n, interval_us, sync=who == "sync")
    return {"latencies": lat, "gc_pauses": pauses.pauses}


def main() -> None:
    who, base, n, interval_us = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    emit_result(_worker(who, base, n, interval_us))


def run(ctx: Context) -> Section:
    n = 60 if ctx.quick else 1_000 + WARMUP
    interval_us = 1_000 if ctx.quick else 3_000
    # Each contestant in a fresh process: the collector's pauses grow with every object a
    # process holds, and this harness holds many (earlier figures, the profiler).
    results = {
        who: run_worker("benchmarks.latency", [who, ctx.flood_url, str(n), str(interval_us)], 300)
        for who in ("bare", "async", "sync")
    }
    bare, async_cb, sync_cb = (
        [float(x) for x in results[who]["latencies"][WARMUP:]] for who in ("bare", "async", "sync")
    )
    gc_bare, gc_async, gc_sync = (
        _describe_pauses(results[who]["gc_pauses"]) for who in ("bare", "async", "sync")
    )
    b50, b99 = median(bare), percentile(bare, 99)
    rows: list[Row] = []
    every = len(bare) == n - WARMUP  # (the workers raise if a mention never arrives)
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
                passed=p99 - b99 <= TARGET_EXTRA_P99_MS and every and len(lat) == len(bare),
                checks={"every mention timed": every and len(lat) == len(bare)},
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
                f"{percentile(v, 99):.3f} | {max(v):.3f} | {pauses} |"
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


if __name__ == "__main__":
    main()
