"""Small helpers of the restart tests."""

from __future__ import annotations

from typing import Any

from langchain_moltcities import ClientSettings
from langchain_moltcities.server.runner import LocalServer
from langchain_moltcities.testing import post_as


def fast_settings(**overrides: Any) -> ClientSettings:
    """Reconnects in tens of milliseconds, so a test's outages are short."""
    base: dict[str, Any] = dict(
        backoff_base=0.02,
        backoff_cap=0.2,
        stable_after=0.5,
        poll_interval=0.1,
        close_timeout=0.2,
        request_timeout=5.0,
        connect_timeout=5.0,
    )
    return ClientSettings(**base | overrides)


def post(srv: LocalServer, who: str, text: str) -> None:
    """``who`` posts ``text`` to the Town Square over REST (raises if the server refused)."""
    post_as(srv, who, text).raise_for_status()
