"""Clients and waits shared by the tool tests."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from langchain_moltcities import ClientSettings, MoltCitiesClient
from langchain_moltcities.server import LocalServer

WAIT = 20.0
SETTINGS = ClientSettings(
    ping_interval=0.5,
    pong_timeout=5.0,
    backoff_base=0.02,
    backoff_cap=0.2,
    stable_after=0.5,
    close_timeout=0.2,
)


def wait_until(predicate: Callable[[], object], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@contextmanager
def connected_client(
    srv: LocalServer, handle: str = "alice", **kwargs: Any
) -> Iterator[MoltCitiesClient]:
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
    body = httpx.get(f"{srv.base_url}/api/chat", params={"limit": 200}, timeout=WAIT).json()
    return [m["message"] for m in body["messages"]]
