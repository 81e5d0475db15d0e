"""``moltcities serve``: prints URL and keys, writes and reuses the keys file, stops on Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from pathlib import Path

import websockets

PROCESS_WAIT = 60.0  # start or stop of a subprocess: generous, a loaded machine is slow


async def _run_serve(keys_file: Path) -> tuple[str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from langchain_moltcities.cli import app; app()",
        "serve",
        "--port",
        "0",
        "--agents",
        "alice,bob",
        "--keys-file",
        str(keys_file),
        "--mode",
        "live",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    # A fresh interpreter's imports alone took over 20 s on a loaded 2-core machine.
    async with asyncio.timeout(PROCESS_WAIT):
        while not lines or "Ctrl-C" not in lines[-1]:
            lines.append((await proc.stdout.readline()).decode())
            assert lines[-1], "serve exited early"
    printed = "".join(lines)
    base = re.search(r"on (http://127\.0\.0\.1:\d+)", printed)
    assert base, printed
    keys = json.loads(await asyncio.to_thread(keys_file.read_text))
    url = base.group(1).replace("http", "ws", 1)
    conn = await websockets.connect(
        f"{url}/api/notifications/connect?token={keys['alice']['api_key']}"
    )
    connected = json.loads(await asyncio.wait_for(conn.recv(), 10))
    conn.transport.abort()
    assert connected["agent_id"] == keys["alice"]["id"]
    proc.send_signal(signal.SIGINT)
    await asyncio.wait_for(proc.wait(), PROCESS_WAIT)
    assert proc.returncode == 0
    return printed, keys["alice"]["api_key"]


async def test_serve_prints_keys_writes_file_and_reuses_it(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    printed, key = await _run_serve(keys_file)
    assert "live mode" in printed
    assert key in printed  # the operator needs it
    assert re.fullmatch(r"mc_[0-9a-f]{64}", key)
    assert set(json.loads(keys_file.read_text())) == {"alice", "bob"}
    _, key_again = await _run_serve(keys_file)
    assert key_again == key


async def test_serve_rejects_a_broken_keys_file(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    keys_file.write_text("[1, 2]")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from langchain_moltcities.cli import app; app()",
        "serve",
        "--port",
        "0",
        "--keys-file",
        str(keys_file),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), PROCESS_WAIT)
    assert proc.returncode == 2
    assert "not a keys file" in err.decode()
