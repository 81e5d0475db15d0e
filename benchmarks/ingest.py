"""Figure 1: ingest throughput of MoltCitiesClient against a bare websockets client.

Both read the same flood (the flood server, another process) in the same run, alternating
rounds so machine noise hits both alike; the figure is the ratio of the medians. One more
(untimed) client round runs under pyinstrument to say where the time goes.
"""

from __future__ import annotations

from benchmarks.clients import bare_flood_seconds, client_flood_seconds
from benchmarks.common import Context, Row, Section, median
from benchmarks.profiling import LoopThreadProfiler, breakdown

TARGET_RATIO = 0.8


def run(ctx: Context) -> Section:
    n = 2_000 if ctx.quick else 50_000
    rounds = 1 if ctx.quick else 3
    bare_rates: list[float] = []
    client_rates: list[float] = []
    counters: dict[str, int] = {}
    bare_flood_seconds(ctx.flood_url, min(n, 2_000))  # warm-up: imports, first connections
    for _ in range(rounds):
        bare_rates.append(n / bare_flood_seconds(ctx.flood_url, n))
        seconds, counters = client_flood_seconds(ctx.flood_url, n)
        client_rates.append(n / seconds)
    bare, client = median(bare_rates), median(client_rates)
    ratio = client / bare
    lost = n - counters.get("received", 0)
    section = Section(
        rows=[
            Row(
                figure="1. Ingest throughput (notifications/s into the buffer)",
                measured=round(client),
                unit="msg/s",
                baseline=round(bare),
                ratio=f"{ratio:.2f} of bare",
                target=f">= {TARGET_RATIO} of bare",
                passed=ratio >= TARGET_RATIO and lost == 0,
                note=f"{n} notifications x {rounds} rounds, median; lost {lost}",
            )
        ]
    )
    lines = [
        "### 1. Ingest throughput",
        "",
        f"{n} notifications per round, {rounds} round(s), bare and client alternating against "
        "the same flood server process (hand-framed, written straight to the socket so the "
        "server is never the bottleneck). Bare = `websockets` client doing only `json.loads`.",
        f"Rates (msg/s): bare {[round(r) for r in bare_rates]}, "
        f"MoltCitiesClient {[round(r) for r in client_rates]}; client counters {counters}.",
    ]
    if ctx.profile:
        lines += ["", *profile_lines(ctx.flood_url, n)]
    section.details = "\n".join(lines)
    return section


def profile_lines(base: str, n: int) -> list[str]:
    """One profiled client round: where the client's loop thread spends its time."""
    prof = LoopThreadProfiler()
    client_flood_seconds(base, n, on_first=prof.start_here, on_done=prof.stop_here)
    if prof.session is None:
        return ["(profiling did not capture the client thread)"]
    b = breakdown(prof.session)
    out = [
        f"Where the time goes (pyinstrument, client loop thread, {b.total_s:.2f} s sampled, "
        "profiled round not timed). Inclusive share of each hot-path step:",
        "",
        "| step | share of loop-thread time |",
        "| --- | --- |",
        *(f"| {label} | {share:.0%} |" for label, share in b.spans),
        "",
        "Self time by package:",
        "",
        "| package | self time |",
        "| --- | --- |",
        *(f"| {pkg} | {share:.0%} |" for pkg, share in b.by_package),
        "",
        "Top functions by self time (C calls are booked on their Python caller):",
        "",
        "| function | self time |",
        "| --- | --- |",
        *(f"| `{fn}` | {share:.1%} |" for fn, share in b.top_functions),
    ]
    return out
