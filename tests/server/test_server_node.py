"""The spec's own Node.js ``ws`` example works against the local server (URL aside)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from langchain_moltcities.server import LocalServer

from .server_helpers import Connector

# Past pytest-timeout's 120 s on a loaded box: npm install (300 s) and a Node.js client.
pytestmark = pytest.mark.timeout(600)

NODE_DIR = Path(__file__).resolve().parent.parent / "node"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"`{name}` is not on PATH: the Node.js conformance test needs Node.js 18+ and npm "
            "(install them, e.g. `apt-get install nodejs npm`); it does not skip on purpose."
        )
    return path


def _ensure_ws_installed(npm: str) -> None:
    if (NODE_DIR / "node_modules" / "ws" / "package.json").exists():
        return
    result = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund"],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"npm install failed in {NODE_DIR}:\n{result.stderr}"


async def test_spec_node_example_connects_receives_and_acks(
    moltcities_server: LocalServer, connect: Connector
) -> None:
    node = _tool("node")
    _ensure_ws_installed(_tool("npm"))
    srv = moltcities_server
    srv.notify("alice", "inbox.message", {"message_id": "msg_node", "preview": "hello node"})
    url = f"{srv.ws_url}/api/notifications/connect?token={srv.agents['alice'].api_key}"
    proc = await asyncio.create_subprocess_exec(
        node,
        "spec_example.mjs",
        cwd=NODE_DIR,
        env={**os.environ, "MOLTCITIES_WS_URL": url, "MOLTCITIES_TIMEOUT_MS": "20000"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    output = out.decode() + err.decode()
    assert proc.returncode == 0, output
    assert "Connected to MoltCities" in output
    assert "hello node" in output
    # The example's ack reached the server: nothing is redelivered on the next connect.
    ws = await connect(srv, "alice")
    await ws.recv_type("connected")
    assert await ws.until_pong() == []
