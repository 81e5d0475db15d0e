"""Shared pieces: result rows, statistics, RSS/CPU measurement and worker subprocesses."""

from __future__ import annotations

import gc
import json
import logging
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
RESULT_PREFIX = "BENCH-RESULT "


def now_ns() -> int:
    """CLOCK_MONOTONIC in ns: system-wide on Linux, so comparable across processes."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


@dataclass
class Row:
    """One line of the results table."""

    figure: str
    measured: float
    unit: str
    baseline: float | None
    target: str
    passed: bool | None
    ratio: str = ""
    note: str = ""
    # What must hold whatever the timing (nothing lost, counters balance, all connected), by
    # name; ``passed`` includes them, and the smoke test asserts them even in a quick run.
    checks: dict[str, bool] = field(default_factory=dict)


@dataclass
class Section:
    """What one benchmark module returns: table rows plus free text for RESULTS.md."""

    rows: list[Row] = field(default_factory=list)
    details: str = ""


@dataclass
class Context:
    """What every benchmark gets: where the flood server is and how long to take."""

    flood_url: str
    quick: bool = False
    profile: bool = True


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), nearest-rank; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def rss_bytes() -> int:
    return int(psutil.Process().memory_info().rss)


def cpu_seconds() -> float:
    """User + system CPU time of this whole process (every thread), ns resolution.

    (psutil's cpu_times() counts in 10 ms clock ticks: too coarse for an idle client.)
    """
    return time.process_time()


class RssSampler:
    """Samples this process's RSS every ``interval`` s on a thread; cheap (one /proc read)."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._proc = psutil.Process()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), int(self._proc.memory_info().rss)))
            self._stop.wait(self.interval)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> list[tuple[float, int]]:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.monotonic(), int(self._proc.memory_info().rss)))
        return self.samples

    @property
    def peak(self) -> int:
        return max((r for _, r in self.samples), default=0)


def quiet_overflow_warnings() -> None:
    """The flood overflows unread buffers on purpose: the client's warning is expected."""
    logging.getLogger("langchain_moltcities.delivery").setLevel(logging.ERROR)


_explicit_collection = False


def collect_garbage() -> None:
    """A full collection before a measurement; GcPauses does not count it."""
    global _explicit_collection
    _explicit_collection = True
    try:
        gc.collect()
    finally:
        _explicit_collection = False


class GcPauses:
    """Records CPython's own collector pauses (they stop every thread) while code runs."""

    def __init__(self, threshold_ms: float = 5.0) -> None:
        self.threshold_ms = threshold_ms
        self.pauses: list[tuple[int, float]] = []
        self._t0 = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if _explicit_collection:
            return
        if phase == "start":
            self._t0 = time.perf_counter()
        elif (ms := (time.perf_counter() - self._t0) * 1000) >= self.threshold_ms:
            self.pauses.append((info["generation"], ms))

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)


def mb(n_bytes: float) -> float:
    return n_bytes / (1024 * 1024)


def emit_result(payload: dict[str, Any]) -> None:
    """How a worker subprocess hands its numbers back: one marked JSON line on stdout."""
    print(RESULT_PREFIX + json.dumps(payload), flush=True)


def run_worker(
    module: str, args: Sequence[str], timeout: float, stdin_text: str = ""
) -> dict[str, Any]:
    """Run ``python -m module args`` (a fresh process: clean RSS and CPU) and return its result.

    Secrets (API keys) go in on stdin, never on the command line.
    """
    cmd = [sys.executable, "-m", module, *args]
    proc = subprocess.run(
        cmd,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_child_env(),
        input=stdin_text,
    )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            result: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            return result
    raise RuntimeError(
        f"benchmark worker {module} gave no result (exit {proc.returncode}):\n"
        f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    )


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env.pop("MOLTCITIES_API_KEY", None)
    return env


def row_dict(row: Row) -> dict[str, Any]:
    return asdict(row)
