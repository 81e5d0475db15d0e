"""Run the local server in the foreground (``moltcities serve``) until interrupted."""

from __future__ import annotations

import json
import os
import secrets
import signal
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from langchain_moltcities.server.events import Mode
from langchain_moltcities.server.runner import LocalServer


class KeysFileError(ValueError):
    """The keys file exists but does not hold ``{handle: {"id", "api_key"}}``."""


def read_keys_file(path: Path) -> dict[str, tuple[str, str]]:
    """``{handle: (id, api_key)}`` from a keys file; empty if it does not exist."""
    if path.is_symlink():
        # Someone could have planted it to hand us keys they know, or to aim our write.
        raise KeysFileError(
            f"{path} is a symbolic link; refusing to use it for keys: give a regular file"
        )
    if not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        keys = {h: (str(v["id"]), str(v["api_key"])) for h, v in raw.items()}
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise KeysFileError(
            f"{path} is not a keys file: expected JSON {{handle: {{'id': ..., 'api_key': ...}}}}"
            f" ({type(exc).__name__}); fix it or delete it to get new keys"
        ) from None
    return keys


def write_keys_file(path: Path, server: LocalServer) -> None:
    """Write the keys, readable by the owner only from the first byte.

    A new file is created 0600 with ``O_EXCL``; an existing one is replaced by a fresh 0600
    file renamed over it (``os.replace`` swaps the name: a symlink planted at ``path`` is
    replaced, never followed), so no one else ever reads the keys, even for a moment.
    """
    data = {h: {"id": a.id, "api_key": a.api_key} for h, a in server.agents.items()}
    payload = (json.dumps(data, indent=2) + "\n").encode("utf-8")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(tmp, flags, 0o600)
    except OSError as exc:
        raise KeysFileError(f"cannot create the keys file next to {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise KeysFileError(f"cannot write the keys file {path}: {exc.strerror}") from None


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8787,
    agents: Sequence[str] = ("alice", "bob"),
    keys_file: Path | None = None,
    mode: Mode = "documented",
    idle_timeout: float = 300.0,
    echo: Callable[[str], None] = print,
    stop_event: threading.Event | None = None,
) -> None:
    """Start a server, print how to reach it, and block until Ctrl-C (or ``stop_event``)."""
    known = read_keys_file(keys_file) if keys_file else {}
    waiter = stop_event or threading.Event()
    interrupted = threading.Event()

    def on_sigint(signum: int, frame: object) -> None:
        interrupted.set()
        waiter.set()

    # Ctrl-C as a flag, not a KeyboardInterrupt that could land on any line (mid-print, or
    # inside stop()) and end the process with 130 instead of a clean stop.
    previous = (
        signal.signal(signal.SIGINT, on_sigint)
        if threading.current_thread() is threading.main_thread()
        else None
    )
    try:
        _serve(host, port, agents, keys_file, mode, idle_timeout, echo, known, waiter)
        if interrupted.is_set():
            echo("Stopped.")
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _serve(
    host: str,
    port: int,
    agents: Sequence[str],
    keys_file: Path | None,
    mode: Mode,
    idle_timeout: float,
    echo: Callable[[str], None],
    known: dict[str, tuple[str, str]],
    waiter: threading.Event,
) -> None:
    server = LocalServer(
        mode=mode,
        agents=agents,
        host=host,
        port=port,
        idle_timeout=idle_timeout,
        agent_keys=known,
    )
    server.start()
    try:
        if keys_file:
            write_keys_file(keys_file, server)
        echo(f"MoltCities local server ({mode} mode) on {server.base_url}")
        echo(f"WebSocket: {server.ws_url}/api/notifications/connect?token=<api key>")
        for agent in server.agents.values():
            echo(f"  {agent.handle:<16} id={agent.id}  api_key={agent.api_key}")
        if keys_file:
            echo(f"Keys written to {keys_file}")
        echo("Press Ctrl-C to stop.")
        while not waiter.wait(0.5):
            pass
    finally:
        server.stop()
