"""Handshake: paths, the four auth forms, 401 before the upgrade, 426, refused handshakes."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from langchain_moltcities.server import LocalServer

from .server_helpers import Connector, rejected, ws_url

AUTH_FORMS = ["token", "api_key", "key", "bearer"]


@pytest.mark.parametrize("param", AUTH_FORMS)
@pytest.mark.parametrize("path", ["/api/notifications/connect", "/api/ws", "/ws"])
async def test_documented_paths_and_auth_forms(
    moltcities_server: LocalServer, connect: Connector, path: str, param: str
) -> None:
    ws = await connect(moltcities_server, "bob", path=path, param=param)
    frame = await ws.recv()
    assert frame["type"] == "connected"
    assert frame["agent_id"] == moltcities_server.agents["bob"].id


@pytest.mark.parametrize("param", AUTH_FORMS)
@pytest.mark.parametrize("path", ["/api/notifications/connect", "/api/ws"])
async def test_live_paths_and_auth_forms(
    moltcities_live_server: LocalServer, connect: Connector, path: str, param: str
) -> None:
    ws = await connect(moltcities_live_server, "bob", path=path, param=param)
    assert (await ws.recv())["agent_id"] == moltcities_live_server.agents["bob"].id


async def test_live_ws_path_is_the_home_page(moltcities_live_server: LocalServer) -> None:
    srv = moltcities_live_server
    status, body = await rejected(ws_url(srv, "alice", path="/ws", param="api_key"))
    assert status == 200
    assert b"<html" in body
    async with httpx.AsyncClient(base_url=srv.base_url) as client:
        page = await client.get("/ws")
    assert page.status_code == 200
    assert "<html" in page.text


async def test_missing_key_is_401_before_upgrade(any_moltcities_server: LocalServer) -> None:
    status, body = await rejected(ws_url(any_moltcities_server, None))
    assert status == 401
    parsed = json.loads(body)
    assert parsed["error"] == "Missing authentication"
    assert "token=" in parsed["hint"]


@pytest.mark.parametrize("param", ["token", "api_key", "key"])
async def test_bad_key_is_401_before_upgrade(
    any_moltcities_server: LocalServer, param: str
) -> None:
    url = f"{any_moltcities_server.ws_url}/api/notifications/connect?{param}=mc_{'0' * 64}"
    status, body = await rejected(url)
    assert (status, json.loads(body)) == (401, {"error": "Invalid API key"})


async def test_bad_bearer_header_is_401(any_moltcities_server: LocalServer) -> None:
    url = f"{any_moltcities_server.ws_url}/api/ws"
    status, body = await rejected(url, {"Authorization": "Bearer mc_nope"})
    assert (status, json.loads(body)) == (401, {"error": "Invalid API key"})


@pytest.mark.parametrize("path", ["/api/notifications/connect", "/api/ws"])
async def test_plain_http_to_websocket_path_is_426(
    any_moltcities_server: LocalServer, path: str
) -> None:
    srv = any_moltcities_server
    async with httpx.AsyncClient(base_url=srv.base_url) as client:
        response = await client.get(path, params={"token": srv.agents["alice"].api_key})
    assert response.status_code == 426
    assert "WebSocket" in response.text


async def test_refuse_handshakes_then_accept_again(
    any_moltcities_server: LocalServer, connect: Connector
) -> None:
    srv = any_moltcities_server
    existing = await connect(srv, "bob")
    await existing.recv_type("connected")
    srv.refuse_handshakes(503)
    status, _ = await rejected(ws_url(srv, "alice"))
    assert status == 503
    assert await existing.until_pong() == []  # open connections are untouched
    srv.refuse_handshakes(None)
    ws = await connect(srv, "alice")
    assert (await ws.recv())["type"] == "connected"


async def test_unknown_http_path_is_json_404(any_moltcities_server: LocalServer) -> None:
    async with httpx.AsyncClient(base_url=any_moltcities_server.base_url) as client:
        response = await client.get("/api/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]


async def test_api_keys_never_reach_log_records(
    any_moltcities_server: LocalServer, connect: Connector, caplog: pytest.LogCaptureFixture
) -> None:
    srv = any_moltcities_server
    caplog.set_level("DEBUG")
    # uvicorn logs each WebSocket request line, query string (and so a token) included, at
    # INFO on its own loggers: let those through so there is something to check.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        caplog.set_level("DEBUG", logger=name)
    ws = await connect(srv, "alice")
    await ws.recv_type("connected")
    await rejected(ws_url(srv, None))
    key = srv.agents["alice"].api_key
    # The websockets *client* logs its request line at DEBUG (a client concern); the
    # server's own records are the ones checked here.
    server_records = [r for r in caplog.records if not r.name.startswith("websockets.client")]
    assert any(r.name.startswith("uvicorn") for r in server_records)  # it did log...
    assert all(key not in r.getMessage() for r in server_records)  # ...without the key


async def test_refused_handshakes_log_no_error(
    moltcities_server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    # uvicorn's websockets-sansio protocol reports every denial response as an ERROR
    # ("returned without completing handshake"); the server filters that noise out.
    srv = moltcities_server
    caplog.set_level(logging.DEBUG)
    bad_key = f"{srv.ws_url}/api/notifications/connect?token=mc_{'0' * 64}"
    assert (await rejected(bad_key))[0] == 401
    srv.refuse_handshakes(503)
    assert (await rejected(ws_url(srv, "alice")))[0] == 503
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
