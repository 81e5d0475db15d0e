"""Run every benchmark and write ``benchmarks/RESULTS.md`` (``make bench``).

``python -m benchmarks.run [--quick] [--only ingest,latency,...] [--output FILE]``
"""

from __future__ import annotations

import argparse
import importlib
import math
import platform
import sys
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import psutil

from benchmarks.common import ROOT, Context, Row, Section, quiet_overflow_warnings
from benchmarks.flood_server import flood_process

FIGURES: tuple[str, ...] = (
    "ingest",
    "latency",
    "memory",
    "cost",
    "idle",
    "many",
    "mcp_latency",
    "fleet",
)
DEFAULT_OUTPUT = ROOT / "benchmarks" / "RESULTS.md"


def crashed(sections: Sequence[tuple[str, Section]]) -> list[str]:
    """The benchmarks that crashed (their row says "did not run")."""
    return [name for name, s in sections if any(r.figure.endswith(": did not run") for r in s.rows)]


def run_figure(name: str, ctx: Context) -> Section:
    """Run one benchmark module; a crash becomes a row that says so (the others still run)."""
    module = importlib.import_module(f"benchmarks.{name}")
    try:
        section: Section = module.run(ctx)
    except Exception as exc:
        detail = traceback.format_exc(limit=3)
        return Section(
            rows=[
                Row(
                    figure=f"{name}: did not run",
                    measured=math.nan,
                    unit="",
                    baseline=None,
                    target="",
                    passed=None,
                    note=f"{type(exc).__name__}: {exc}".replace("\n", " ")[:300],
                )
            ],
            details=f"### {name}: error\n\n```\n{detail}\n```",
        )
    return section


def _num(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isnan(value):
        return "error"
    text = f"{int(value):,}" if value == int(value) else f"{value:g}"
    return f"{text} {unit}".strip()


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(sections: Sequence[tuple[str, Section]], ctx: Context, seconds: float) -> str:
    """The markdown report: the table first, then each figure's details."""
    verdict = {True: "pass", False: "**FAIL**", None: "n/a"}
    lines = [
        "# Benchmark results",
        "",
        f"Produced by `{'make bench' if not ctx.quick else 'python -m benchmarks.run --quick'}`"
        f" (`python -m benchmarks.run{' --quick' if ctx.quick else ''}`) on "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}, in {seconds:.0f} s. Machine: "
        f"{psutil.cpu_count()} CPUs (shared with other work), Python "
        f"{platform.python_version()}, {platform.system()} {platform.release()}. "
        "Every baseline was measured in the same run, so ratios hold up on noisy machines; "
        "absolute numbers do not travel.",
        "",
        "| Figure | Measured | Baseline (same run) | Ratio / bound | Target | Result | Notes |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for _, section in sections:
        for r in section.rows:
            lines.append(
                "| "
                + " | ".join(
                    _cell(c)
                    for c in (
                        r.figure,
                        _num(r.measured, r.unit),
                        _num(r.baseline, r.unit),
                        r.ratio,
                        r.target,
                        verdict[r.passed],
                        "; ".join(
                            filter(
                                None,
                                [r.note, *(f"FAILED: {k}" for k, ok in r.checks.items() if not ok)],
                            )
                        ),
                    )
                )
                + " |"
            )
    for _, section in sections:
        if section.details:
            lines += ["", section.details]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks and write the report; the exit status is 1 if any of them crashed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes: seconds, not minutes")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {FIGURES}")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--no-profile", action="store_true", help="skip the pyinstrument pass")
    args = parser.parse_args(argv)
    chosen = [f.strip() for f in args.only.split(",") if f.strip()] or list(FIGURES)
    unknown = [f for f in chosen if f not in FIGURES]
    if unknown:
        parser.error(f"unknown figure(s) {unknown}; choose from {', '.join(FIGURES)}")
    quiet_overflow_warnings()
    started = time.monotonic()
    sections: list[tuple[str, Section]] = []
    with flood_process() as flood_url:
        ctx = Context(flood_url=flood_url, quick=args.quick, profile=not args.no_profile)
        for name in chosen:
            t0 = time.monotonic()
            print(f"[bench] {name} ...", file=sys.stderr, flush=True)
            section = run_figure(name, ctx)
            sections.append((name, section))
            for r in section.rows:
                print(
                    f"[bench]   {r.figure}: {_num(r.measured, r.unit)} "
                    f"(baseline {_num(r.baseline, r.unit)}; {r.ratio}) -> "
                    f"{ {True: 'pass', False: 'FAIL', None: 'n/a'}[r.passed] }",
                    file=sys.stderr,
                    flush=True,
                )
            print(f"[bench]   ({time.monotonic() - t0:.1f} s)", file=sys.stderr, flush=True)
    report = render(sections, ctx, time.monotonic() - started)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report, encoding="utf-8")
    print(f"[bench] wrote {args.output}", file=sys.stderr)
    if broken := crashed(sections):
        print(f"[bench] crashed: {', '.join(broken)} (see the report)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
