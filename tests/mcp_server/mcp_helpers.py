"""Run ``moltcities mcp`` as a real subprocess and talk to it with the MCP SDK's own client."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO

import anyio
from langchain_core.messages import ToolMessage
from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from pydantic import AnyUrl

from langchain_moltcities.server import LocalServer
from langchain_moltcities.testing import WAIT
from langchain_moltcities.tools import MoltCitiesToolkit

MOLTCITIES = str(Path(sys.executable).with_name("moltcities"))
STATUS = AnyUrl("moltcities://status")
TOWN_SQUARE = AnyUrl("moltcities://town-square")
_NONCE = re.compile(r"untrusted-[0-9a-f]{6}")


def mcp_env(
    srv: LocalServer | None, handle: str = "alice", key: str | None = None
) -> dict[str, str]:
    """The server's environment: this one's, with the MoltCities variables set (or unset)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOLTCITIES_")}
    if srv is not None:
        env["MOLTCITIES_BASE_URL"] = srv.base_url
        env["MOLTCITIES_API_KEY"] = key if key is not None else srv.agents[handle].api_key
    return env


class Recorder:
    """The resource updates the server sent."""

    def __init__(self) -> None:
        self.updated: list[str] = []
        self._arrived = anyio.Event()

    async def __call__(self, message: Any) -> None:
        if isinstance(message, types.ServerNotification):
            if isinstance(message.root, types.ResourceUpdatedNotification):
                self.updated.append(str(message.root.params.uri))
                self._arrived.set()

    async def wait_updated(self, uri: str, count: int = 1) -> None:
        """Until ``count`` updates of ``uri`` have arrived (fails after the generous WAIT)."""
        with anyio.fail_after(WAIT):
            while self.updated.count(uri) < count:
                self._arrived = anyio.Event()  # one loop: nothing can arrive before the wait
                await self._arrived.wait()


@contextlib.asynccontextmanager
async def stdio_session(
    env: dict[str, str], errlog: TextIO, recorder: Recorder | None = None
) -> AsyncIterator[ClientSession]:
    """An initialised session with ``moltcities mcp`` started as a subprocess over stdio."""
    params = StdioServerParameters(command=MOLTCITIES, args=["mcp"], env=env)
    async with (
        stdio_client(params, errlog=errlog) as (read, write),
        ClientSession(
            read, write, read_timeout_seconds=timedelta(seconds=WAIT), message_handler=recorder
        ) as session,
    ):
        await session.initialize()
        yield session


@contextlib.contextmanager
def http_server(env: dict[str, str], log: Path) -> Iterator[str]:
    """``moltcities mcp --transport streamable-http --port 0``; yields its URL, SIGKILLs it."""
    with log.open("w") as err:
        proc = subprocess.Popen(
            [MOLTCITIES, "mcp", "--transport", "streamable-http", "--port", "0"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        deadline = time.monotonic() + WAIT
        while not (found := re.search(r"http://\S+/mcp", log.read_text())):
            assert proc.poll() is None, f"the server exited: {log.read_text()}"
            assert time.monotonic() < deadline, f"no ready line: {log.read_text()}"
            time.sleep(0.02)
        yield found.group(0)
    finally:
        proc.kill()
        proc.wait(timeout=WAIT)


@contextlib.asynccontextmanager
async def http_session(url: str, recorder: Recorder | None = None) -> AsyncIterator[ClientSession]:
    async with (
        streamable_http_client(url) as (read, write, _),
        ClientSession(
            read, write, read_timeout_seconds=timedelta(seconds=WAIT), message_handler=recorder
        ) as session,
    ):
        await session.initialize()
        yield session


def text_of(result: types.CallToolResult) -> str:
    assert len(result.content) == 1, result
    block = result.content[0]
    assert isinstance(block, types.TextContent), block
    return block.text


async def read_status(session: ClientSession) -> dict[str, Any]:
    result = await session.read_resource(STATUS)
    block = result.contents[0]
    assert isinstance(block, types.TextResourceContents) and block.mimeType == "application/json"
    status: dict[str, Any] = json.loads(block.text)
    return status


async def wait_status(session: ClientSession, what: str, predicate: Any) -> dict[str, Any]:
    """Poll ``moltcities://status`` until ``predicate(status)``; fail naming ``what``."""
    with anyio.fail_after(WAIT):
        # The server's state, not an event of ours: polling is the way to see it.
        while not predicate(status := await read_status(session)):  # noqa: ASYNC110
            await anyio.sleep(0.02)
    return status


def same_text(text: str) -> str:
    """A tool text with what differs call to call (fence nonces, seconds to wait) made equal."""
    return re.sub(r"\d+ s\b", "N s", _NONCE.sub("untrusted-NONCE", text))


def client_tools(client: Any) -> dict[str, Any]:
    return {t.name: t for t in MoltCitiesToolkit(client=client).get_tools()}


def langchain_call(tool: Any, args: dict[str, Any]) -> ToolMessage:
    msg = tool.invoke({"name": tool.name, "args": args, "id": "call_1", "type": "tool_call"})
    assert isinstance(msg, ToolMessage)
    return msg
