"""Pytest fixtures: a real Redis-compatible server (see :mod:`.embedded`), never a mock.

Register with ``pytest_plugins = ["langchain_moltcities.fleet.pytest_plugin"]``.
``redis_url`` gives each test an emptied database on one server shared by the session;
``redis_factory`` starts private servers for tests that kill or restart theirs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from langchain_moltcities.fleet.embedded import EmbeddedRedis

__all__ = ["StateAt", "redis_factory", "redis_server", "redis_url", "state_at"]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    """A private Redis-compatible server for the test session."""
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    """The shared server's URL, its database 0 emptied for this test."""
    import redis

    with redis.Redis.from_url(redis_server.url) as r:
        r.flushdb()
    return redis_server.url


@pytest.fixture
def redis_factory() -> Iterator[Callable[..., EmbeddedRedis]]:
    """Start private servers (``appendonly=True`` to keep data across a restart,
    ``cluster=True`` for a one-node Cluster that refuses cross-slot commands); all stopped."""
    started: list[EmbeddedRedis] = []

    def start(*, appendonly: bool = False, cluster: bool = False) -> EmbeddedRedis:
        server = EmbeddedRedis(appendonly=appendonly, cluster=cluster).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


# state_at("alice.db"): a file in the test's folder, or the URL of an emptied Redis database
# (every name maps to that one database: a test that needs two stores uses two agent ids).
StateAt = Callable[[str], Path | str]


@pytest.fixture(params=["sqlite", "redis"])
def state_at(request: pytest.FixtureRequest, tmp_path: Path) -> StateAt:
    """Run a state test on each persistent backend."""
    if request.param == "redis":
        url: str = request.getfixturevalue("redis_url")
        return lambda name: url
    return lambda name: tmp_path / name
