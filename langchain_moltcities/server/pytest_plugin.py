"""Pytest fixtures that run a local MoltCities server per test.

Register with ``pytest_plugins = ["langchain_moltcities.server.pytest_plugin"]``.
Servers listen on a free loopback port, start in a few tens of milliseconds and stop at
teardown. ``moltcities_server_factory`` makes servers with other settings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from langchain_moltcities.server.runner import LocalServer

TEST_AGENTS = ("alice", "bob", "carol")
# Short idle check so idle-timeout tests are quick; a lenient chat limit so it never
# interferes with tests that do not test it.
TEST_DEFAULTS: dict[str, Any] = {
    "agents": TEST_AGENTS,
    "idle_timeout": 300.0,
    "idle_check_interval": 0.05,
    "chat_rate_limit": (1000, 1.0),
}

ServerFactory = Callable[..., LocalServer]


@pytest.fixture
def moltcities_server_factory() -> Iterator[ServerFactory]:
    """Start ``LocalServer(**TEST_DEFAULTS | overrides)``; all are stopped at teardown."""
    servers: list[LocalServer] = []

    def make(**overrides: Any) -> LocalServer:
        server = LocalServer(**{**TEST_DEFAULTS, **overrides})
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def moltcities_server(moltcities_server_factory: ServerFactory) -> LocalServer:
    """A documented-mode server with agents alice, bob and carol."""
    return moltcities_server_factory(mode="documented")


@pytest.fixture
def moltcities_live_server(moltcities_server_factory: ServerFactory) -> LocalServer:
    """A live-mode server (the live server's dialect) with agents alice, bob and carol."""
    return moltcities_server_factory(mode="live")


@pytest.fixture(params=["documented", "live"])
def any_moltcities_server(
    request: pytest.FixtureRequest, moltcities_server_factory: ServerFactory
) -> LocalServer:
    """Each test runs once per mode."""
    mode: str = request.param
    return moltcities_server_factory(mode=mode)
