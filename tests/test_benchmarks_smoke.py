"""Each benchmark runs in its quickest mode and produces numbers (no timing is asserted).

Benchmarks are not tests; this only keeps them from rotting as the code under them changes.
"""

from __future__ import annotations

import importlib
import math
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# benchmarks/ is a top-level package beside tests/, not installed: make it importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import Context, Row, Section
from benchmarks.flood_server import flood_process
from benchmarks.run import FIGURES, render


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
        assert row.passed in (True, False), row
        assert row.target and row.ratio, row
    assert section.details.startswith("### "), section.details[:80]
    if figure == "ingest":  # the profile says where the time goes
        assert "| parse_frame (json.loads + pydantic) | " in section.details
        assert "| websockets | " in section.details


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
