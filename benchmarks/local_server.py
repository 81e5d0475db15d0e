"""The package's LocalServer in its own process, for the idle and many-agents figures.

``python -m benchmarks.local_server KEYS_FILE N [MODE]`` starts a server (``documented`` mode
unless MODE says ``live``: that one never answers a client's close frame) with agents
``a0``..``a{N-1}``, writes their API keys to KEYS_FILE (mode 0600), prints ``URL <base>`` and
serves until its stdin closes.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from benchmarks.common import ROOT, _child_env


def raise_fd_limit() -> None:
    """A thousand WebSockets need more descriptors than the usual soft limit of 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@contextmanager
def local_server_process(
    n_agents: int, mode: str = "documented"
) -> Iterator[tuple[str, list[str]]]:
    """Yield (base URL, API keys of a0..a{n-1}) of a LocalServer running in a child process."""
    with tempfile.TemporaryDirectory() as tmp:
        keys_file = Path(tmp) / "keys.json"
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.local_server", str(keys_file), str(n_agents), mode],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=_child_env(),
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line.startswith("URL "):
                raise RuntimeError(f"local server did not start: {line!r}")
            keys = json.loads(keys_file.read_text(encoding="utf-8"))
            yield line.split()[1], keys
        finally:
            if proc.stdin:
                proc.stdin.close()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main() -> None:
    from langchain_moltcities.server import LocalServer

    raise_fd_limit()
    keys_file, n = Path(sys.argv[1]), int(sys.argv[2])
    mode: Literal["documented", "live"] = "live" if sys.argv[3:] == ["live"] else "documented"
    handles = [f"a{i}" for i in range(n)]
    with LocalServer(mode=mode, agents=handles) as server:
        fd = os.open(keys_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump([server.agents[h].api_key for h in handles], f)
        print(f"URL {server.base_url}", flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
