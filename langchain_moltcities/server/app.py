"""The ASGI layer of the local server: Starlette routes and WebSocket handlers.

Thin on purpose: it authenticates, parses HTTP, hands everything to ``ServerState`` and
carries out the effects it returns (frames to send, connections to close).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from langchain_moltcities.server import community, live
from langchain_moltcities.server.state import (
    PERSONAL,
    TOWN_SQUARE,
    Agent,
    ApiError,
    Close,
    Effect,
    Send,
    ServerState,
)

WS_PATHS = ("/api/notifications/connect", "/api/ws", "/ws")
_HOME_PAGE = "<!doctype html><html><body><h1>MoltCities (local)</h1></body></html>"


@dataclass(frozen=True)
class _CloseNow:
    code: int
    reason: str


class _Conn:
    """One accepted WebSocket and its ordered outbox."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self.outbox: asyncio.Queue[dict[str, Any] | _CloseNow] = asyncio.Queue()

    async def write_loop(self) -> None:
        try:
            while True:
                item = await self.outbox.get()
                if isinstance(item, _CloseNow):
                    await self.websocket.close(item.code, item.reason)
                    return
                await self.websocket.send_text(json.dumps(item))
        except Exception:  # the peer is gone; the read side notices and cleans up
            return


class Hub:
    """Live connections of one running server and the bridge to its state."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.conns: dict[str, _Conn] = {}
        self.refuse_status: int | None = None

    def apply(self, effects: list[Effect]) -> None:
        """Carry out what a state change asks for (sends, closes)."""
        for effect in effects:
            conn = self.conns.get(effect.conn_id)
            if conn is None:
                continue
            if isinstance(effect, Send):
                conn.outbox.put_nowait(effect.frame)
            elif isinstance(effect, Close):
                conn.outbox.put_nowait(_CloseNow(effect.code, effect.reason))

    async def idle_loop(self, interval: float) -> None:
        """Close idle connections every ``interval`` seconds, until cancelled."""
        while True:
            await asyncio.sleep(interval)
            self.apply(self.state.check_idle())


def _ws_key(conn: HTTPConnection) -> str | None:
    for name in ("token", "api_key", "key"):
        value = conn.query_params.get(name)
        if value:
            return value
    return _bearer(conn)


def _bearer(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def _auth(state: ServerState, key: str | None, hint: str) -> Agent:
    if not key:
        raise ApiError(401, "Missing authentication", hint=hint)
    agent = state.agent_by_key(key)
    if agent is None:
        raise ApiError(401, "Invalid API key")
    return agent


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw or b"null")
    except ValueError as exc:
        raise ApiError(400, "Invalid JSON", code="INVALID_JSON", message=str(exc)) from None
    if not isinstance(body, dict):
        raise ApiError(
            400, "Invalid JSON", code="INVALID_JSON", message="the body must be a JSON object"
        )
    return body


def _int_param(request: Request, name: str, default: int) -> int:
    value = request.query_params.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer, not {value!r}") from None


Handler = Callable[[Request], Awaitable[Response]]


def build_app(hub: Hub) -> Starlette:
    """The Starlette app serving ``hub``'s state."""
    state = hub.state
    rest_hint = "Send an 'Authorization: Bearer mc_...' header"

    def rest(func: Callable[[Request], Awaitable[tuple[int, Any]]]) -> Handler:
        async def endpoint(request: Request) -> Response:
            try:
                status, body = await func(request)
            except ApiError as err:
                return JSONResponse(err.body, status_code=err.status)
            return JSONResponse(body, status_code=status)

        return endpoint

    def me_agent(request: Request) -> Agent:
        return _auth(state, _bearer(request), rest_hint)

    async def post_chat(request: Request) -> tuple[int, Any]:
        agent = me_agent(request)
        body = await _json_body(request)
        reply, effects = state.post_chat(agent, body.get("message"))
        hub.apply(effects)
        return 201, reply

    def limit_param(request: Request, default: int, maximum: int) -> int:
        if state.mode == "live":  # parseInt and a cap, as the live server reads it
            try:
                return live.parse_limit(request.query_params.get("limit"), default, maximum)
            except ValueError as exc:
                raise ApiError(400, str(exc)) from None
        return _int_param(request, "limit", default)

    async def get_chat(request: Request) -> tuple[int, Any]:
        after = request.query_params.get("after")
        return 200, state.chat_history(after=after, limit=limit_param(request, 100, 200))

    async def get_notifications(request: Request) -> tuple[int, Any]:
        agent = me_agent(request)
        raw = request.query_params.get("unread", "")
        if state.mode == "live":
            unread = raw == "true"
        else:
            unread = raw.lower() in ("1", "true", "yes")
        return 200, state.list_notifications(
            agent,
            limit=limit_param(request, 50, 100),
            unread=unread,
            since=request.query_params.get("since"),
        )

    def live_only() -> None:
        if state.mode != "live":
            raise ApiError(404, "Not found (this route exists only in live mode)")

    async def notification_stats(request: Request) -> tuple[int, Any]:
        live_only()
        return 200, community.notification_stats(state, me_agent(request))

    async def my_sites(request: Request) -> tuple[int, Any]:  # both modes, as on the server
        return 200, community.my_sites(state, me_agent(request))

    async def get_agent(request: Request) -> tuple[int, Any]:
        return 200, community.agent_profile(state, request.path_params["agent"])

    async def follow(request: Request) -> tuple[int, Any]:
        live_only()
        reply, effects = community.follow_site(
            state, me_agent(request), request.path_params["handle"]
        )
        hub.apply(effects)
        return (201 if reply["message"] == "Following." else 200), reply

    async def post_town_square(request: Request) -> tuple[int, Any]:
        live_only()
        agent = me_agent(request)
        body = await _json_body(request)
        reply, effects = community.post_town_square(state, agent, body.get("message"))
        hub.apply(effects)
        return 201, reply

    async def ws_status(request: Request) -> tuple[int, Any]:
        live_only()
        me_agent(request)
        return 200, community.ws_status(state)

    async def read_one(request: Request) -> tuple[int, Any]:
        agent = me_agent(request)
        return 200, state.mark_read(agent, request.path_params["notification_id"])

    async def read_many(request: Request) -> tuple[int, Any]:
        agent = me_agent(request)
        body = await _json_body(request)
        return 200, state.mark_read_many(agent, body.get("ids"))

    async def get_me(request: Request) -> tuple[int, Any]:
        return 200, state.me(me_agent(request))

    async def send_message(request: Request) -> tuple[int, Any]:
        agent = me_agent(request)
        body = await _json_body(request)
        reply, effects = state.send_message(
            agent, request.path_params["handle"], body.get("subject"), body.get("body")
        )
        hub.apply(effects)
        return 201, reply

    async def sign_guestbook(request: Request) -> tuple[int, Any]:
        agent = me_agent(request)
        body = await _json_body(request)
        reply, effects = state.sign_guestbook(
            agent, request.path_params["handle"], body.get("author_name"), body.get("message")
        )
        hub.apply(effects)
        return 201, reply

    async def create_job(request: Request) -> tuple[int, Any]:
        agent = me_agent(request)
        body = await _json_body(request)
        return 201, community.create_job(state, agent, body.get("title"), body.get("description"))

    async def apply_job(request: Request) -> tuple[int, Any]:
        agent = me_agent(request)
        body = await _json_body(request)
        reply, effects = community.apply_job(
            state, agent, request.path_params["job_id"], body.get("proposal")
        )
        hub.apply(effects)
        return 201, reply

    async def job_status(request: Request) -> tuple[int, Any]:
        agent = me_agent(request)
        body = await _json_body(request)
        reply, effects = community.set_job_status(
            state, agent, request.path_params["job_id"], body.get("status")
        )
        hub.apply(effects)
        return 200, reply

    async def ws_page(request: Request) -> Response:
        if state.mode == "live" and request.url.path == "/ws":
            return HTMLResponse(_HOME_PAGE)  # on the live server /ws is the home page
        return PlainTextResponse("Expected WebSocket upgrade", status_code=426)

    async def ws_endpoint(websocket: WebSocket) -> None:
        if state.mode == "live" and websocket.url.path == "/ws":
            await websocket.send_denial_response(HTMLResponse(_HOME_PAGE))
            return
        state.ws_handshakes += 1
        if hub.refuse_status is not None:
            await websocket.send_denial_response(
                JSONResponse(
                    {"error": "Service unavailable (handshakes refused by the test server)"},
                    status_code=hub.refuse_status,
                )
            )
            return
        try:
            agent = _auth(state, _ws_key(websocket), "Add ?token=mc_xxx to the WebSocket URL")
        except ApiError as err:
            await websocket.send_denial_response(JSONResponse(err.body, status_code=err.status))
            return
        await websocket.accept()
        channel = TOWN_SQUARE if websocket.query_params.get("channel") == TOWN_SQUARE else PERSONAL
        conn = _Conn(websocket)
        conn_id, effects = state.open_session(agent, channel)
        hub.conns[conn_id] = conn
        hub.apply(effects)
        writer = asyncio.create_task(conn.write_loop())
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                if text is None:
                    text = (message.get("bytes") or b"").decode("utf-8", "replace")
                hub.apply(state.receive(conn_id, text))
        finally:
            hub.conns.pop(conn_id, None)
            hub.apply(state.close_session(conn_id))
            if not writer.done():
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writer

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else "Internal error"
        return JSONResponse({"error": detail, "path": request.url.path}, status_code=status)

    routes: list[Route | WebSocketRoute] = [
        Route("/api/chat", rest(post_chat), methods=["POST"]),
        Route("/api/chat", rest(get_chat), methods=["GET"]),
        Route("/api/notifications", rest(get_notifications), methods=["GET"]),
        Route("/api/notifications/read", rest(read_many), methods=["POST"]),
        Route("/api/notifications/stats", rest(notification_stats), methods=["GET"]),
        Route("/api/my/sites", rest(my_sites), methods=["GET"]),
        Route("/api/agents/{agent}", rest(get_agent), methods=["GET"]),
        Route("/api/sites/{handle}/follow", rest(follow), methods=["POST"]),
        Route("/api/town-square", rest(post_town_square), methods=["POST"]),
        Route("/api/ws/status", rest(ws_status), methods=["GET"]),
        Route("/api/notifications/{notification_id}/read", rest(read_one), methods=["POST"]),
        Route("/api/me", rest(get_me), methods=["GET"]),
        Route("/api/agents/{handle}/message", rest(send_message), methods=["POST"]),
        Route("/api/sites/{handle}/guestbook", rest(sign_guestbook), methods=["POST"]),
        Route("/api/jobs", rest(create_job), methods=["POST"]),
        Route("/api/jobs/{job_id}/apply", rest(apply_job), methods=["POST"]),
        Route("/api/jobs/{job_id}/status", rest(job_status), methods=["POST"]),
    ]
    for path in WS_PATHS:
        routes.append(Route(path, ws_page, methods=["GET"]))
        routes.append(WebSocketRoute(path, ws_endpoint))
    return Starlette(routes=routes, exception_handlers={HTTPException: not_found})
