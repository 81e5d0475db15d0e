"""The demo's log: each tool result names the call it answers; live mode shows handles."""

from __future__ import annotations

import io
import re

from rich.console import Console

from langchain_moltcities.demo import run_demo


def test_live_demo_log_pairs_results_with_calls_and_shows_handles() -> None:
    out = io.StringIO()
    console = Console(file=out, width=250, color_system=None)
    summary = run_demo(duration=12, mode="live", console=console)
    log = out.getvalue()
    assert summary.turns >= 1, log
    calls = re.findall(r"calls (\w+) \[([^\]]+)\]", log)
    results = re.findall(r"<- (\w+) \[([^\]]+)\] (?:ok|error|failed)", log)
    assert calls and results, log
    assert len(set(calls)) == len(calls)  # every call is named apart
    for pair in results:
        assert pair in calls, f"result {pair} has no call: {log}"
        assert calls.index(pair) < log.count("\n")  # its call came first
    woken = re.findall(r"wakes for\s+@(\S+)", log)
    assert woken, log
    assert all(re.fullmatch(r"[a-z0-9_-]+", who) for who in woken), woken  # handles, not names
