"""Figure 1: ingest throughput of MoltCitiesClient against a bare websockets client.

Both read the same flood (the flood server, another process) in the same run, alternating
rounds so machine noise hits both alike; the figure is the ratio of the medians. The client
has its default buffer (1,000) and nobody reads it, so most items are parsed, validated,
deduplicated, buffered and then dropped for overflow, which the counters must show: nothing
unaccounted for. One more round keeps every item (buffer = N), which adds garbage-collector
work, and one untimed round runs under pyinstrument to say where the time goes.

Figure 1c: a deep buffer. 100,000 notifications into a buffer that keeps them all, bare and
client alternating; measured in CPU time per frame (this process, every thread), which a
busy machine disturbs far less than wall time.
"""

from __future__ import annotations

import gc
import json
import os
import tempfile
import timeit
import tracemalloc
from collections.abc import Callable

from benchmarks.clients import bare_flood_cpu, bare_flood_seconds, client_flood_seconds
from benchmarks.common import Context, Row, Section, median, quiet_overflow_warnings
from benchmarks.items import flood_frame
from benchmarks.profiling import LoopThreadProfiler, breakdown
from langchain_moltcities.delivery import DeliveryBuffer
from langchain_moltcities.holding import FrameCodec
from langchain_moltcities.protocol import NotificationFrame, parse_frame

TARGET_RATIO = 0.8
TARGET_STATE_RATIO = 0.7  # with a SQLite state file (restart-safe agents)
DEEP = 100_000


def run(ctx: Context) -> Section:
    n = 2_000 if ctx.quick else 50_000
    rounds = 1 if ctx.quick else 5
    bare_rates: list[float] = []
    client_rates: list[float] = []
    state_rates: list[float] = []
    counters: dict[str, float] = {}
    state_counters: dict[str, float] = {}
    bare_flood_seconds(ctx.flood_url, min(n, 2_000))  # warm-up: imports, first connections
    with tempfile.TemporaryDirectory(prefix="moltcities-bench-") as tmp:
        for i in range(rounds):
            bare_rates.append(n / bare_flood_seconds(ctx.flood_url, n))
            seconds, counters = client_flood_seconds(ctx.flood_url, n)
            client_rates.append(n / seconds)
            # A fresh file per round: the same work each time (first start writes its cursor).
            state = os.path.join(tmp, f"agent-{i}.db")
            seconds, state_counters = client_flood_seconds(ctx.flood_url, n, state=state)
            state_rates.append(n / seconds)
    bare, client, with_state = median(bare_rates), median(client_rates), median(state_rates)
    ratio = client / bare
    state_ratio = with_state / bare
    state_lost = n - state_counters.get("received", 0)
    lost = n - counters.get("received", 0)
    kept_all_n, _ = client_flood_seconds(ctx.flood_url, n, buffer_size=n)
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
                checks={"unaccounted 0": lost == 0},
                note=f"{n} notifications x {rounds} rounds, median, buffer_size=1000 unread; "
                f"unaccounted {lost}",
            ),
            Row(
                figure="1b. Ingest throughput with a SQLite state file",
                measured=round(with_state),
                unit="msg/s",
                baseline=round(bare),
                ratio=f"{state_ratio:.2f} of bare",
                target=f">= {TARGET_STATE_RATIO} of bare",
                passed=state_ratio >= TARGET_STATE_RATIO and state_lost == 0,
                checks={"unaccounted 0": state_lost == 0},
                note=f"state='agent.db' (WAL, written behind); without state "
                f"{ratio:.2f} of bare in the same rounds; unaccounted {state_lost}",
            ),
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
        f"With a SQLite state file (`state=...`, 1b) in the same rounds: "
        f"{[round(r) for r in state_rates]}; counters {state_counters}. Nothing is written "
        "per frame: the cursor and acks (and live pushes, which the server keeps no copy of; "
        "this flood is documented-dialect, so none) are saved by one task every 50 ms, on a "
        "writer thread. "
        "With state / without, round by round: "
        f"{[round(w / c, 2) for w, c in zip(state_rates, client_rates, strict=True)]}.",
        "Ratio of each round (client over the bare round before it): "
        f"{', '.join(f'{c / b:.2f}' for b, c in zip(bare_rates, client_rates, strict=True))}.",
        f"With buffer_size={n} (every item kept, so the garbage collector walks them all): "
        f"{n / kept_all_n:.0f} msg/s ({n / kept_all_n / bare:.2f} of bare).",
        f"Per message: bare {1e6 / bare:.1f} us, MoltCitiesClient {1e6 / client:.1f} us "
        f"(+{1e6 / client - 1e6 / bare:.1f} us); for {TARGET_RATIO} of bare the client may "
        f"spend at most {1e6 / bare / TARGET_RATIO:.1f} us.",
    ]
    deep_row, deep_lines = deep_buffer(ctx)
    section.rows.append(deep_row)
    lines += ["", *deep_lines]
    quiet_overflow_warnings()
    lines += ["", *micro_lines(500 if ctx.quick else 5_000)]
    lines += ["", *held_memory_lines(2_000 if ctx.quick else DEEP)]
    if ctx.profile:
        lines += ["", *profile_lines(ctx.flood_url, n, 1e6 / client)]
    section.details = "\n".join(lines)
    return section


def deep_buffer(ctx: Context) -> tuple[Row, list[str]]:
    """Figure 1c: CPU per frame with every one of ``DEEP`` notifications held unread."""
    n = 5_000 if ctx.quick else DEEP
    rounds = 1 if ctx.quick else 3
    bare_us: list[float] = []
    client_us: list[float] = []
    counters: dict[str, float] = {}
    for _ in range(rounds):
        bare_us.append(bare_flood_cpu(ctx.flood_url, n) / n * 1e6)
        _, counters = client_flood_seconds(ctx.flood_url, n, buffer_size=n)
        client_us.append(counters["cpu_s"] / n * 1e6)
    bare, client = median(bare_us), median(client_us)
    ratio = bare / client
    held_all = counters.get("pending") == n and counters.get("received") == n
    per_item = counters.get("held_bytes", 0) / max(1, n)
    row = Row(
        figure=f"1c. Ingest with {n:,} unread held (CPU per frame)",
        measured=round(client, 2),
        unit="us CPU/msg",
        baseline=round(bare, 2),
        ratio=f"{ratio:.2f} of bare",
        target=f">= {TARGET_RATIO} of bare",
        passed=ratio >= TARGET_RATIO and held_all,
        checks={f"all {n:,} held unread": held_all},
        note=f"{n} notifications x {rounds} rounds, median, buffer_size={n}; all held: "
        f"{held_all}; {per_item:.0f} bytes of frame held per item",
    )
    lines = [
        f"### 1c. Ingest into a deep buffer ({n:,} unread held)",
        "",
        f"{n} notifications per round, {rounds} round(s), bare and client alternating; the "
        f"client's buffer_size is {n}, so it holds every one unread. CPU time of this process "
        "per frame (us), every thread: "
        f"bare {[round(u, 2) for u in bare_us]}, MoltCitiesClient "
        f"{[round(u, 2) for u in client_us]}; last client counters {counters}. Buffers hold "
        "each frame as the JSON bytes it arrived in, re-parsed only when read, so a deep "
        "buffer adds no live objects for the garbage collector to walk.",
    ]
    return row, lines


def held_memory_lines(n: int) -> list[str]:
    """Memory per held item (tracemalloc): frames held as models (before) and as bytes (now)."""
    frames = [flood_frame(i).encode() for i in range(n)]

    def held_bytes(as_models: bool) -> float:
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        buf: DeliveryBuffer[NotificationFrame] = DeliveryBuffer(
            n, codec=None if as_models else FrameCodec((NotificationFrame,), 64 << 10)
        )
        for src in frames:
            raw = bytes(bytearray(src))  # a fresh copy, as if just received
            frame = parse_frame(raw)
            assert isinstance(frame, NotificationFrame)
            buf.offer(frame, item_id=frame.id, kind=frame.event_type, raw=raw)
        size = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        assert buf.pending() == n
        del buf
        return size / n

    models_b = held_bytes(True)
    bytes_b = held_bytes(False)
    raw_len = sum(map(len, frames)) / n
    return [
        f"Memory per held item ({n:,} flood notifications of {raw_len:.0f} bytes on the wire, "
        "parsed and offered to a buffer that keeps them all; tracemalloc, the buffer's "
        "dedupe memory included):",
        "",
        "| held as | bytes per item |",
        "| --- | --- |",
        f"| pydantic models (before) | {models_b:.0f} |",
        f"| the JSON bytes as received (now) | {bytes_b:.0f} |",
    ]


def micro_lines(n: int) -> list[str]:
    """The client's own per-message steps, timed in isolation on the flood's frames."""
    frames = [flood_frame(i) for i in range(n)]
    parsed = [parse_frame(f) for f in frames]

    def per_message_us(fn: Callable[[], object]) -> float:
        return min(timeit.repeat(fn, number=1, repeat=5)) / n * 1e6

    def offer_all() -> None:
        buf: DeliveryBuffer[object] = DeliveryBuffer(1000)
        for frame in parsed:
            assert isinstance(frame, NotificationFrame)
            buf.offer(frame, item_id=frame.id, kind=frame.event_type)

    steps = [
        ("json.loads (all the bare client does)", lambda: [json.loads(f) for f in frames]),
        ("parse_frame (json.loads + pydantic)", lambda: list(map(parse_frame, frames))),
        (
            "NotificationFrame.model_validate_json (pydantic-core parses the JSON)",
            lambda: [NotificationFrame.model_validate_json(f) for f in frames],
        ),
        ("DeliveryBuffer.offer (dedupe + bound, 1,000 unread)", offer_all),
    ]
    timings = [(label, per_message_us(fn)) for label, fn in steps]
    return [
        f"The client's own steps timed alone ({n} flood frames, best of 5):",
        "",
        "| step | us per message |",
        "| --- | --- |",
        *(f"| {label} | {us:.2f} |" for label, us in timings),
    ]


def profile_lines(base: str, n: int, us_per_msg: float) -> list[str]:
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
        "| step | share of loop-thread time | ~us per message (unprofiled) |",
        "| --- | --- | --- |",
        *(f"| {label} | {share:.0%} | {share * us_per_msg:.1f} |" for label, share in b.spans),
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
