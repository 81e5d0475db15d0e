"""Fixtures for the server conformance tests (helpers live in ``server_helpers``)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from langchain_moltcities.server import LocalServer

from .server_helpers import WAIT, Api, Connector


@pytest.fixture
async def connect() -> AsyncIterator[Connector]:
    connector = Connector()
    yield connector
    connector.reset_all()


@pytest.fixture
async def api_for() -> AsyncIterator[Callable[[LocalServer], Api]]:
    """``api_for(server)`` -> an ``Api`` (httpx) bound to that server."""
    clients: list[httpx.AsyncClient] = []

    def make(server: LocalServer) -> Api:
        # Without TCP_NODELAY, httpx's separate header and body writes meet delayed ACKs
        # and every keep-alive request takes ~40 ms.
        transport = httpx.AsyncHTTPTransport(
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
        )
        client = httpx.AsyncClient(base_url=server.base_url, timeout=WAIT, transport=transport)
        clients.append(client)
        return Api(server, client)

    yield make
    for client in clients:
        await client.aclose()
