"""Short restart chaos in both dialects: an agent process killed with SIGKILL at seeded random
moments while notifications, chat and mentions flow, restarted on the same state file; then
the books against the server's journal (see restart_chaos.py; ``make soak`` runs it long)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from langchain_moltcities.server.events import Mode

from .restart_chaos import run_restart_chaos

SEED = int(os.environ.get("RESTART_SEED", "11"))


@pytest.mark.timeout(600)
@pytest.mark.parametrize("mode", ["documented", "live"])
def test_kill_9_and_restart_loses_and_repeats_nothing(mode: Mode, tmp_path: Path) -> None:
    lines: list[str] = []
    report = run_restart_chaos(mode, SEED, kills=2, mentions=6, workdir=tmp_path, log=lines.append)
    assert report.kills == 2 and report.incarnations == 3
    assert report.mentions == 6 and report.chat_posted > 0 and report.shown > 0
    assert not report.problems(), (
        f"{report.summary()}\n" + "\n".join(report.problems()) + "\n" + "\n".join(lines)
    )
