"""Each benchmark runs in its quickest mode and produces numbers (no timing is asserted).

Benchmarks are not tests; this only keeps them from rotting as the code under them changes.
"""

from __future__ import annotations

import importlib
import math
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

# benchmarks/ is a top-level package beside tests/, not installed: make it importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.clients import client_flood_seconds
from benchmarks.common import Context, Row, Section
from benchmarks.flood_server import flood_process
from benchmarks.profiling import SPANS
from benchmarks.run import FIGURES, crashed, render, run_figure


@pytest.fixture(scope="module")
def quick_context() -> Iterator[Context]:
    with flood_process() as url:
        yield Context(flood_url=url, quick=True, profile=True)


def _is_number(value: float | None) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


@pytest.mark.parametrize("figure", FIGURES)
def test_benchmark_produces_numbers(figure: str, quick_context: Context) -> None:
    section = importlib.import_module(f"benchmarks.{figure}").run(quick_context)
    assert section.rows, f"{figure} produced no rows"
    for row in section.rows:
        assert _is_number(row.measured), row
        assert _is_number(row.baseline), row
        # Timings aren't judged here, but what must hold whatever the timing is: nothing lost,
        # counters balanced, every client connected.
        assert row.checks, f"{row.figure} states no check beyond its timing"
        assert all(row.checks.values()), (row.figure, row.checks)
        assert row.target and row.ratio, row
    assert section.details.startswith("### "), section.details[:80]
    if figure == "ingest":  # the profile says where the time goes
        assert "| parse_frame (json.loads + pydantic) | " in section.details
        assert "| langchain_moltcities.wire | " in section.details  # the socket side


def test_profile_steps_are_functions_on_the_hot_path(quick_context: Context) -> None:
    """Each step of the profile table is a function every flooded message runs through."""
    called: Counter[tuple[str, str]] = Counter()

    def tracer(frame: FrameType, event: str, arg: object) -> None:
        if event == "call":
            called[(frame.f_code.co_filename.replace("\\", "/"), frame.f_code.co_name)] += 1

    # The hooks run in mention callbacks on the client's loop: tracing covers the middle of
    # the flood, a few hundred messages, each parsed once.
    client_flood_seconds(
        quick_context.flood_url,
        2_000,
        on_first=lambda: sys.setprofile(tracer),
        on_done=lambda: sys.setprofile(None),
    )

    def calls(path_part: str, func: str) -> int:
        return sum(c for (path, name), c in called.items() if name == func and path_part in path)

    messages = calls("langchain_moltcities/protocol.py", "parse_frame")
    assert messages >= 50, called.most_common(20)
    for label, path_part, func, _ in SPANS:
        # One socket read holds many messages, unframed in one call.
        least = 1 if func in ("data_received", "split_messages") else messages
        assert calls(path_part, func) >= least, f"{label}: {func} ran {calls(path_part, func)}x"


def test_a_crashed_benchmark_makes_the_run_fail() -> None:
    section = run_figure("ingest", Context(flood_url="http://127.0.0.1:9", quick=True))
    assert section.rows[0].figure == "ingest: did not run"
    assert "Error" in section.rows[0].note and section.details.startswith("### ingest: error")
    assert crashed([("ingest", section)]) == ["ingest"]
    assert crashed([("x", Section(rows=[Row("1. x", 1.0, "ms", 1.0, "", True)]))]) == []


def test_report_is_a_markdown_table() -> None:
    row = Row(
        figure="1. Example | with a pipe",
        measured=1.5,
        unit="ms",
        baseline=1.0,
        ratio="1.50 of bare",
        target="<= 2 ms",
        passed=False,
    )
    text = render([("x", Section(rows=[row], details="### x\n\ndetail"))], Context(""), 1.0)
    table = [ln for ln in text.splitlines() if ln.startswith("| ")]
    assert table[0].startswith("| Figure | Measured | Baseline (same run) |")
    assert "1. Example \\| with a pipe" in table[-1]
    assert "| 1.5 ms | 1 ms | 1.50 of bare | <= 2 ms | **FAIL** |" in table[-1]
    assert text.rstrip().endswith("detail")
