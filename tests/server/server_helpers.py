"""Helpers for the server conformance tests: a JSON WebSocket client and an HTTP client."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import ClientConnection

from langchain_moltcities.server import LocalServer

WAIT = 10.0  # generous: normally a frame arrives within milliseconds


class WS:
    """A websockets client connection speaking JSON frames."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn

    async def send(self, frame: dict[str, Any] | str) -> None:
        await self.conn.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def recv(self, wait: float = WAIT) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.conn.recv(), wait)
        frame: dict[str, Any] = json.loads(raw)
        return frame

    async def recv_type(self, kind: str, wait: float = WAIT) -> dict[str, Any]:
        """The next frame of ``type`` ``kind``, skipping others."""
        async with asyncio.timeout(wait):
            while True:
                frame = await self.recv(wait)
                if frame.get("type") == kind:
                    return frame

    async def until_pong(self) -> list[dict[str, Any]]:
        """Every frame the server sent before answering a ping now.

        The server handles a connection's frames in order, so whatever it meant to send
        before this ping arrives first: a way to show that something was *not* sent
        without waiting an arbitrary time.
        """
        await self.send({"type": "ping"})
        frames: list[dict[str, Any]] = []
        while True:
            frame = await self.recv()
            if frame.get("type") == "pong":
                return frames
            frames.append(frame)

    async def closed(self, wait: float = WAIT) -> tuple[int | None, str]:
        """Wait for the server's close frame (or the link's end); its (code, reason).

        The close frame is the verdict: in live mode the server keeps the TCP connection
        open for a while after it, and this does not wait for that.
        """
        async with asyncio.timeout(wait):
            while self.conn.protocol.close_rcvd is None:
                if self.conn.protocol.state is websockets.protocol.State.CLOSED:
                    break
                with contextlib.suppress(websockets.ConnectionClosed, TimeoutError):
                    await asyncio.wait_for(self.conn.recv(), 0.05)
        rcvd = self.conn.protocol.close_rcvd
        if rcvd is None:
            return 1006, ""
        return rcvd.code, rcvd.reason


def ws_url(
    server: LocalServer,
    handle: str | None,
    *,
    channel: str | None = None,
    path: str = "/api/notifications/connect",
    param: str = "token",
) -> str:
    query = []
    if handle is not None:
        query.append(f"{param}={server.agents[handle].api_key}")
    if channel is not None:
        query.append(f"channel={channel}")
    return f"{server.ws_url}{path}" + ("?" + "&".join(query) if query else "")


class Connector:
    """``await connect(server, "alice", channel=None, path=..., param="token")`` -> ``WS``.

    ``param`` is ``token``, ``api_key``, ``key`` or ``bearer`` (Authorization header).
    Reads nothing, so the caller sees the ``connected`` frame. ``reset_all()`` aborts
    every connection (no close handshake: live mode never answers it).
    """

    def __init__(self) -> None:
        self.opened: list[ClientConnection] = []

    async def __call__(
        self,
        server: LocalServer,
        handle: str,
        *,
        channel: str | None = None,
        path: str = "/api/notifications/connect",
        param: str = "token",
        close_timeout: float = 2.0,
    ) -> WS:
        headers = None
        if param == "bearer":
            headers = {"Authorization": f"Bearer {server.agents[handle].api_key}"}
            url = ws_url(server, None, channel=channel, path=path)
        else:
            url = ws_url(server, handle, channel=channel, path=path, param=param)
        conn = await websockets.connect(
            url, additional_headers=headers, close_timeout=close_timeout, open_timeout=WAIT
        )
        self.opened.append(conn)
        return WS(conn)

    def reset_all(self) -> None:
        for conn in self.opened:
            conn.transport.abort()


class Api:
    """``httpx`` against a server, acting as one of its agents."""

    def __init__(self, server: LocalServer, client: httpx.AsyncClient) -> None:
        self.server = server
        self.client = client

    def auth(self, handle: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.server.agents[handle].api_key}"}

    async def post(self, path: str, handle: str | None, body: Any = None) -> httpx.Response:
        headers = self.auth(handle) if handle else {}
        return await self.client.post(path, json=body, headers=headers)

    async def get(self, path: str, handle: str | None = None, **params: Any) -> httpx.Response:
        headers = self.auth(handle) if handle else {}
        return await self.client.get(path, params=params, headers=headers)

    async def chat(self, handle: str, message: str) -> dict[str, Any]:
        response = await self.post("/api/chat", handle, {"message": message})
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def message(self, sender: str, to: str, body: str, subject: str = "hi") -> str:
        response = await self.post(
            f"/api/agents/{to}/message", sender, {"subject": subject, "body": body}
        )
        assert response.status_code == 201, response.text
        message_id: str = response.json()["id"]
        return message_id


ApiFor = Callable[[LocalServer], Api]


async def eventually(check: Callable[[], bool], wait: float = WAIT) -> None:
    """Poll ``check`` until true (fails after ``wait`` seconds)."""
    async with asyncio.timeout(wait):
        while True:
            if check():
                return
            await asyncio.sleep(0.01)


async def rejected(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """Status and body of a WebSocket handshake the server must refuse."""
    try:
        conn = await websockets.connect(url, additional_headers=headers, open_timeout=WAIT)
    except websockets.InvalidStatus as exc:
        return exc.response.status_code, bytes(exc.response.body or b"")
    conn.transport.abort()
    raise AssertionError(f"handshake to {url.split('?')[0]} unexpectedly succeeded")
