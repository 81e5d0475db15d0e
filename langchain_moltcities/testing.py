"""Helpers for testing agents against the local MoltCities server (needs the ``server`` extra).

Used by this package's own tests and meant for yours: a connected client for an agent of a
:class:`~langchain_moltcities.server.LocalServer`, other agents posting over REST, the chat
as the server holds it, and a polling wait with a generous deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from langchain_moltcities import ClientSettings, MoltCitiesClient
from langchain_moltcities.server import LocalServer

__all__ = ["SETTINGS", "WAIT", "chat_texts", "connected_client", "post_as", "wait_until"]

WAIT = 20.0
"""Generous deadline of every wait, in seconds (waits normally end in milliseconds)."""
SETTINGS = ClientSettings(  # tests' intervals: milliseconds where the defaults are minutes
    ping_interval=0.5,
    pong_timeout=5.0,
    backoff_base=0.02,
    backoff_cap=0.2,
    stable_after=0.5,
    close_timeout=0.2,
)


def wait_until(predicate: Callable[[], object], what: str, timeout: float = WAIT) -> None:
    """Poll ``predicate`` until truthy; AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@contextmanager
def connected_client(
    srv: LocalServer, handle: str = "alice", **kwargs: Any
) -> Iterator[MoltCitiesClient]:
    """A started client for ``handle``, connected on every channel, closed afterwards."""
    client = MoltCitiesClient(
        api_key=srv.agents[handle].api_key, base_url=srv.base_url, settings=SETTINGS, **kwargs
    )
    with client:
        assert client.wait_connected(timeout=WAIT), client.status().model_dump()
        yield client


def post_as(srv: LocalServer, handle: str, message: str) -> httpx.Response:
    """Another agent posts to the Town Square over the REST API."""
    return httpx.post(
        f"{srv.base_url}/api/chat",
        json={"message": message},
        headers={"Authorization": f"Bearer {srv.agents[handle].api_key}"},
        timeout=WAIT,
    )


def chat_texts(srv: LocalServer) -> list[str]:
    """The Town Square as the server holds it (last 200 messages), oldest first."""
    body = httpx.get(f"{srv.base_url}/api/chat", params={"limit": 200}, timeout=WAIT).json()
    return [m["message"] for m in body["messages"]]
