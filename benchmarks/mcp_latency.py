"""MCP figure: a tool call through ``moltcities mcp`` over stdio, against the same LangChain
tool called in process.

Both run at once against a LocalServer in its own process, as two agents (one agent's second
connection would displace the first): the in-process ``check_notifications`` tool of a
MoltCitiesClient, and the same tool through the MCP SDK's client and a ``moltcities mcp``
subprocess. Calls alternate, one of each in turn, so both see the same machine noise. The
buffer is empty, so the figure is the cost of the call path itself (validation, rendering,
and for MCP: JSON-RPC over two pipes and a second process).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import TextResourceContents
from pydantic import AnyUrl

from benchmarks.common import Context, Row, Section, _child_env, median, percentile
from benchmarks.local_server import local_server_process
from langchain_moltcities import MoltCitiesClient, MoltCitiesToolkit

TARGET_MEDIAN_MS = 10.0
"""An LLM turn takes seconds: a tool call over stdio should stay within a few milliseconds."""
TOOL = "check_notifications"


async def _wait_connected(session: ClientSession) -> None:
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline:
        block = (await session.read_resource(AnyUrl("moltcities://status"))).contents[0]
        if isinstance(block, TextResourceContents) and json.loads(block.text)["connected"]:
            return
        await asyncio.sleep(0.05)
    raise RuntimeError("the MCP server's client did not connect")


async def _measure(base: str, keys: list[str], n: int, devnull: TextIO) -> dict[str, list[float]]:
    client = MoltCitiesClient(api_key=keys[0], base_url=base)
    env = _child_env() | {"MOLTCITIES_API_KEY": keys[1], "MOLTCITIES_BASE_URL": base}
    params = StdioServerParameters(
        command=str(Path(sys.executable).with_name("moltcities")), args=["mcp"], env=env
    )
    tool = {t.name: t for t in MoltCitiesToolkit(client=client).get_tools()}[TOOL]
    call: dict[str, Any] = {"name": TOOL, "args": {}, "id": "bench", "type": "tool_call"}
    times: dict[str, list[float]] = {"in_process": [], "mcp_stdio": []}
    differing = 0  # calls whose MCP text was not the in-process tool's
    async with (
        client,
        stdio_client(params, errlog=devnull) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        if not await client.await_connected(timeout=60):
            raise RuntimeError("the in-process client did not connect")
        await _wait_connected(session)
        for i in range(n + 5):  # the first five warm both paths up
            t0 = time.perf_counter()
            local = await tool.ainvoke(call)
            t1 = time.perf_counter()
            result = await session.call_tool(TOOL, {})
            t2 = time.perf_counter()
            if result.isError:
                raise RuntimeError(f"the MCP call failed: {result.content}")
            block = result.content[0]
            differing += getattr(block, "text", None) != local.content
            if i >= 5:
                times["in_process"].append((t1 - t0) * 1000)
                times["mcp_stdio"].append((t2 - t1) * 1000)
    times["differing"] = [float(differing)]
    return times


def run(ctx: Context) -> Section:
    n = 30 if ctx.quick else 300
    # The server's stderr (warnings only) would interleave with the report's progress lines.
    with local_server_process(2) as (base, keys), open(os.devnull, "w") as devnull:
        times = asyncio.run(_measure(base, keys, n, devnull))
    mcp, local = times["mcp_stdio"], times["in_process"]
    mcp_med, local_med = median(mcp), median(local)
    rows = [
        Row(
            figure=f"MCP. Tool call over stdio ({TOOL}), median of {n}",
            measured=round(mcp_med, 3),
            unit="ms",
            baseline=round(local_med, 3),
            ratio=f"{mcp_med / local_med:.1f}x the in-process call",
            target=f"<= {TARGET_MEDIAN_MS:g} ms median",
            passed=mcp_med <= TARGET_MEDIAN_MS,
            note=f"p90 {percentile(mcp, 90):.2f} ms over MCP vs {percentile(local, 90):.2f} ms "
            "in process; calls alternate",
            checks={
                "every call answered, none an error": len(mcp) == n == len(local),
                "the same text both ways": times["differing"] == [0.0],
            },
        )
    ]
    details = (
        "### MCP. Tool-call latency over stdio\n\n"
        f"`{TOOL}` on an empty buffer, {n} calls each, alternating: through the MCP SDK's "
        f"client and a `moltcities mcp` subprocess (JSON-RPC over pipes) median "
        f"{mcp_med:.2f} ms, p90 {percentile(mcp, 90):.2f} ms; the same LangChain tool in "
        f"process (`ainvoke`) median {local_med:.3f} ms, p90 {percentile(local, 90):.3f} ms. "
        "Both agents connected to one LocalServer in its own process."
    )
    return Section(rows=rows, details=details)
