"""A fleet worker process for the tests: started with alice's key on stdin, its stdout lines
collected, stopped with SIGTERM (SIGKILL after 30 s)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from langchain_moltcities.server.runner import LocalServer

ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
    """``python -m <module> <args>`` with alice's key on stdin; ``lines`` is what it printed."""

    def __init__(self, srv: LocalServer, module: str, *args: str, name: str = "") -> None:
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=os.environ | {"PYTHONPATH": str(ROOT)},
        )
        assert self.proc.stdin is not None
        self.proc.stdin.write(srv.agents["alice"].api_key + "\n")
        self.proc.stdin.close()
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def said(self, what: str) -> list[list[str]]:
        """The words after ``what`` on each line that starts with it."""
        return [line.split()[1:] for line in list(self.lines) if line.split()[:1] == [what]]

    @property
    def holding(self) -> bool:
        """Whether the last word on holding was "on"."""
        said = self.said("holder")
        return bool(said) and said[-1] == ["on"]

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it is still running after 30 s."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)


def server_books(srv: LocalServer) -> Callable[[], list[tuple[str, bool]]]:
    """(notification id, done on the server): acked (documented) or marked read (live)."""
    alice = srv.agents["alice"].id
    return lambda: srv._call(
        lambda: [(n.id, n.acked or n.read) for n in srv.state.notifications[alice]]
    )


def notification_names(srv: LocalServer) -> list[set[str]]:
    """Each of alice's notifications' ids: its socket id and (live messages) its REST id."""
    alice = srv.agents["alice"].id
    return srv._call(
        lambda: [{n.id, n.event.rest_id or n.id} for n in srv.state.notifications[alice]]
    )
