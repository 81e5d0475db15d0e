"""Errors a program can act on: their type says what to fix, their text says how."""

from __future__ import annotations

import socket

import pytest

from conftest import eventually, fast_settings
from langchain_moltcities import (
    AuthenticationError,
    MoltCitiesClient,
    NetworkError,
    NotConnectedError,
)
from langchain_moltcities.server import LocalServer
from langchain_moltcities.testing import SETTINGS


def _dead_port() -> int:
    with socket.socket() as s:  # bound then closed: nobody listens there
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_rest_call_to_an_unreachable_server_is_a_network_error() -> None:
    port = _dead_port()
    key = "mc_" + "ab" * 32
    client = MoltCitiesClient(
        api_key=key, base_url=f"http://127.0.0.1:{port}", settings=fast_settings()
    )
    with client, pytest.raises(NetworkError) as caught:
        client.chat_history(limit=5)
    err = caught.value
    assert err.url == f"http://127.0.0.1:{port}/api/chat"
    assert err.method == "GET" and not err.timed_out
    assert f"127.0.0.1:{port}/api/chat" in str(err) and "base_url" in str(err)
    assert key not in str(err) and key not in repr(err)


def test_wait_connected_raises_the_reason_for_a_bad_key(moltcities_server: LocalServer) -> None:
    key = "mc_" + "7" * 64
    client = MoltCitiesClient(api_key=key, base_url=moltcities_server.base_url, settings=SETTINGS)
    with client:
        assert client.wait_connected(timeout=20) is False  # the default still answers False
        with pytest.raises(AuthenticationError) as caught:
            client.wait_connected(timeout=20, raise_on_failure=True)
    assert "MOLTCITIES_API_KEY" in str(caught.value) and key not in str(caught.value)


def test_wait_connected_raises_a_network_error_when_nobody_answers() -> None:
    port = _dead_port()
    client = MoltCitiesClient(
        api_key="mc_" + "ab" * 32, base_url=f"http://127.0.0.1:{port}", settings=SETTINGS
    )
    with client, pytest.raises(NetworkError) as caught:
        client.wait_connected(timeout=0.5, raise_on_failure=True)
    assert str(port) in caught.value.url and "could not connect" in str(caught.value)


async def test_await_connected_raises_when_displaced(moltcities_server: LocalServer) -> None:
    srv = moltcities_server
    client = MoltCitiesClient(
        api_key=srv.agents["alice"].api_key, base_url=srv.base_url, settings=SETTINGS
    )
    async with client:
        assert await client.await_connected(timeout=20, raise_on_failure=True)
        srv.disconnect_all(4003)  # displaced: the client does not come back by itself
        await eventually(lambda: not client.status().connected, 20, "the close to land")
        with pytest.raises(NotConnectedError) as caught:
            await client.await_connected(timeout=20, raise_on_failure=True)
    assert "displaced" in str(caught.value)


def test_local_server_start_returns_the_server() -> None:
    srv = LocalServer(agents=["alice"]).start()
    try:
        assert isinstance(srv, LocalServer) and srv.base_url.startswith("http://")
    finally:
        srv.stop()
