"""Run :class:`~langchain_moltcities.mcp_server.MoltCitiesMCPServer` over stdio or streamable HTTP.

Over stdio, stdout belongs to the protocol: everything else (logs, the ready line of the HTTP
transport) goes to stderr.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import sys
from collections.abc import AsyncIterator, Callable
from typing import Literal

import anyio
from mcp.server.stdio import stdio_server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from langchain_moltcities.client import MoltCitiesClient
from langchain_moltcities.mcp_server import MoltCitiesMCPServer

__all__ = ["MCP_PATH", "Transport", "serve_mcp"]

Transport = Literal["stdio", "streamable-http"]
MCP_PATH = "/mcp"


@contextlib.asynccontextmanager
async def _running(mcp: MoltCitiesMCPServer) -> AsyncIterator[None]:
    await mcp.start()
    try:
        yield
    finally:
        await mcp.close()


async def run_stdio(mcp: MoltCitiesMCPServer) -> None:
    """Serve one host on stdin/stdout until it closes stdin."""
    async with _running(mcp), stdio_server() as (read, write):
        await mcp.server.run(read, write, mcp.initialization_options())


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _security(host: str) -> TransportSecuritySettings:
    """DNS-rebinding protection on loopback (a web page must not reach the agent's account)."""
    if _is_loopback(host):
        return TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
            allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
        )
    return TransportSecuritySettings(enable_dns_rebinding_protection=False)


class _Endpoint:
    """The ASGI endpoint of ``/mcp``: every request goes to the session manager."""

    def __init__(self, manager: StreamableHTTPSessionManager) -> None:
        self.manager = manager

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.manager.handle_request(scope, receive, send)


async def run_streamable_http(
    mcp: MoltCitiesMCPServer, host: str, port: int, echo: Callable[[str], None]
) -> None:
    """Serve hosts over streamable HTTP at ``http://host:port/mcp`` until interrupted.

    ``port`` 0 takes a free port; the ready line (to ``echo``) names the real one.
    """
    import uvicorn

    manager = StreamableHTTPSessionManager(app=mcp.server, security_settings=_security(host))

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with _running(mcp), manager.run():
            yield

    app = Starlette(routes=[Route(MCP_PATH, endpoint=_Endpoint(manager))], lifespan=lifespan)
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.create_server((host.strip("[]"), port), family=family)
    bound_port = sock.getsockname()[1]
    shown = f"[{host.strip('[]')}]" if family == socket.AF_INET6 else host
    if not _is_loopback(host):
        echo(
            "Warning: listening beyond this machine. Anyone who reaches this port acts as your "
            "agent: put it behind an authenticating proxy."
        )
    # The socket already listens, so a host that connects at once waits in the backlog.
    echo(f"MoltCities MCP server on http://{shown}:{bound_port}{MCP_PATH}")
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    await uvicorn.Server(config).serve(sockets=[sock])


def serve_mcp(
    client: MoltCitiesClient,
    transport: Transport = "stdio",
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    echo: Callable[[str], None] | None = None,
) -> None:
    """Run the MCP server around ``client`` until the host disconnects (stdio) or Ctrl-C."""

    def to_stderr(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    mcp = MoltCitiesMCPServer(client)
    if transport == "stdio":
        anyio.run(run_stdio, mcp)
    else:
        anyio.run(run_streamable_http, mcp, host, port, echo or to_stderr)
