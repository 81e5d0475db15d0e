"""REST calls of the MoltCities API over one ``httpx.AsyncClient``.

Thin I/O: builds requests, maps unsuccessful answers to the package's errors, returns the
protocol models. The client runs these on its own loop; its sync methods wrap them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, SecretStr, ValidationError

from langchain_moltcities.errors import (
    ApiError,
    AuthenticationError,
    InvalidArgumentError,
    MoltCitiesError,
    NetworkError,
    RateLimitError,
)
from langchain_moltcities.protocol import (
    ChatFrame,
    ChatHistory,
    ChatPostResponse,
    MeResponse,
    NotificationsPage,
)
from langchain_moltcities.redact import redact
from langchain_moltcities.render import sanitize
from langchain_moltcities.restcheck import check_chat_text, path_segment
from langchain_moltcities.tls import http_ssl_context

__all__ = ["CHAT_MAX_CHARS", "DEFAULT_MAX_RESPONSE_BYTES", "MAX_RETRY_AFTER", "RestApi"]

CHAT_MAX_CHARS = 500
DEFAULT_MAX_RESPONSE_BYTES = 4 << 20
"""Largest REST answer read (4 MiB: a full 200-message chat page is about 200 KB)."""
MAX_RETRY_AFTER = 3600.0
"""A longer ``retry_after`` is taken as an hour: a hostile server can't park a caller."""
_log = logging.getLogger("langchain_moltcities.rest")
_M = TypeVar("_M", bound=BaseModel)


class RestApi:
    """MoltCities REST endpoints used by the client."""

    def __init__(
        self,
        base_url: str,
        api_key: SecretStr,
        *,
        timeout: float,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        proxy: str | None = None,
    ) -> None:
        self._key = api_key
        self._timeout = timeout
        self._max_bytes = max_response_bytes
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            headers={"User-Agent": "langchain-moltcities"},
            follow_redirects=False,
            # One proxy rule for REST and WebSocket: a proxy only when asked (``proxy=``);
            # HTTP(S)_PROXY in the environment would otherwise receive the Bearer key.
            proxy=proxy,
            trust_env=False,
            verify=http_ssl_context(),  # one per process: each costs ~1 MB and ~100 ms
        )

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._http.aclose()

    # ------------------------------------------------------------------ endpoints

    async def post_chat(self, message: str) -> ChatFrame:
        """``POST /api/chat``: the posted message."""
        text = message.strip()
        if not text:
            raise InvalidArgumentError("chat message is empty; write 1 to 500 characters")
        if len(text) > CHAT_MAX_CHARS:
            raise InvalidArgumentError(
                f"chat message is {len(text)} characters; the limit is {CHAT_MAX_CHARS}: "
                "shorten it or split it into several posts"
            )
        check_chat_text(text, self._key.get_secret_value())
        body = await self._request("POST", "/api/chat", json={"message": text})
        return self._model(ChatPostResponse, body, "POST /api/chat").message.to_chat()

    async def chat_history(self, after: str | None = None, limit: int | None = None) -> ChatHistory:
        """``GET /api/chat``: messages after ``after``, oldest first."""
        params: dict[str, Any] = {}
        if after:
            params["after"] = after
        if limit is not None:
            if not 1 <= limit <= 200:
                raise InvalidArgumentError(f"limit must be between 1 and 200, got {limit}")
            params["limit"] = limit
        body = await self._request("GET", "/api/chat", params=params)
        page = self._model(ChatHistory, body, "GET /api/chat")
        if limit is not None and len(page.messages) > limit:
            # More than asked: keep the page the caller asked for (the next ones after
            # ``after``, else the newest), not whatever the server chose to send.
            kept = page.messages[:limit] if after else page.messages[-limit:]
            page = page.model_copy(update={"messages": kept})
        return page

    async def list_notifications(
        self, *, unread: bool = True, limit: int | None = None, since: str | None = None
    ) -> NotificationsPage:
        """``GET /api/notifications``: one page."""
        params: dict[str, Any] = {}
        if unread:
            params["unread"] = "true"
        if limit is not None:
            if not 1 <= limit <= 100:
                raise InvalidArgumentError(f"limit must be between 1 and 100, got {limit}")
            params["limit"] = limit
        if since:
            params["since"] = since
        body = await self._request("GET", "/api/notifications", params=params)
        page = self._model(NotificationsPage, body, "GET /api/notifications")
        if limit is not None and len(page.notifications) > limit:
            kept = page.notifications[:limit]
            page = page.model_copy(update={"notifications": kept, "has_more": True})
        return page

    async def mark_read(self, notification_id: str) -> None:
        """``POST /api/notifications/{id}/read``."""
        await self._request("POST", f"/api/notifications/{path_segment(notification_id)}/read")

    async def mark_read_many(self, ids: list[str]) -> None:
        """``POST /api/notifications/read`` with up to 100 ids (one request for a batch)."""
        if not 1 <= len(ids) <= 100:
            raise InvalidArgumentError(f"mark 1 to 100 notifications read at once, not {len(ids)}")
        await self._request("POST", "/api/notifications/read", json={"ids": ids})

    async def me(self) -> MeResponse:
        """``GET /api/me``."""
        body = await self._request("GET", "/api/me")
        return self._model(MeResponse, body, "GET /api/me")

    # Raw bodies: the handle directory reads the few fields it needs, whatever else is there.
    async def agent(self, agent_id: str) -> Any:
        """``GET /api/agents/{id}`` (the live server answers by id or site slug)."""
        if not agent_id or "/" in agent_id or len(agent_id) > 128:
            raise InvalidArgumentError(f"{agent_id[:40]!r} is not an agent id")
        return await self._request("GET", f"/api/agents/{quote(agent_id, safe='')}")

    async def my_sites(self) -> Any:
        """``GET /api/my/sites``: the agent's own sites (the first slug is its handle)."""
        return await self._request("GET", "/api/my/sites")

    # ------------------------------------------------------------------ plumbing

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One call under one deadline: connect, send, every byte of the answer, within
        ``timeout`` in total (httpx's own timeout is per read: a server trickling a byte at a
        time would hold the call forever), and at most ``max_response_bytes`` of body."""
        what = f"{method} {path}"
        try:
            async with asyncio.timeout(self._timeout):
                status, reason, headers, content = await self._exchange(method, path, **kwargs)
        except (TimeoutError, httpx.TimeoutException):
            raise NetworkError(
                self._url(path),
                f"took longer than {self._timeout:g} s in total",
                method=method,
                timed_out=True,
            ) from None
        except httpx.HTTPError as exc:
            detail = redact(str(exc) or type(exc).__name__, [self._key.get_secret_value()])
            raise NetworkError(self._url(path), sanitize(detail, 300), method=method) from None
        if 300 <= status < 400:
            # Never followed: a redirect could carry the Authorization header anywhere.
            where = headers.get("location")
            to = f" to {sanitize(where, 200)}" if where else ""
            raise ApiError(
                status,
                f"{what} answered with a redirect (HTTP {status}){to}, which is not followed",
                hint="Check base_url: it should be the server's final address (https://...).",
            )
        if status < 300:
            if status == 204 or not content:
                return None
            try:
                return json.loads(content)
            except ValueError:
                raise ApiError(
                    status,
                    f"{what} answered with something that is not JSON",
                    hint="Check base_url: it should point at a MoltCities server.",
                ) from None
        raise self._error(status, reason, headers, content, what)

    def _url(self, path: str) -> str:
        """The full URL of ``path`` for error messages (never holds the key)."""
        return redact(str(self._http.base_url.join(path)), [self._key.get_secret_value()])

    async def _exchange(
        self, method: str, path: str, **kwargs: Any
    ) -> tuple[int, str, httpx.Headers, bytes]:
        headers = {"Authorization": f"Bearer {self._key.get_secret_value()}"}
        async with self._http.stream(method, path, headers=headers, **kwargs) as response:
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self._max_bytes:
                raise _too_big(method, path, self._max_bytes, response.status_code)
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self._max_bytes:
                    raise _too_big(method, path, self._max_bytes, response.status_code)
                chunks.append(chunk)
            return response.status_code, response.reason_phrase, response.headers, b"".join(chunks)

    def _error(
        self, status: int, reason: str, headers: httpx.Headers, content: bytes, what: str
    ) -> MoltCitiesError:
        payload: Any = None
        try:
            payload = json.loads(content) if content else None
        except ValueError:
            payload = None
        message = _server_message(payload) or reason or "no explanation given"
        # The server's words reach an LLM and a terminal: one clean, short line, no key.
        message = sanitize(redact(message, [self._key.get_secret_value()]), 300)
        if status in (401, 403):
            return AuthenticationError(
                f"{what}: MoltCities rejected the API key (HTTP {status}: {message}). Check "
                "MOLTCITIES_API_KEY (or the api_key argument).",
                status=status,
            )
        if status == 429:
            return RateLimitError(_retry_after(payload, headers), message)
        return ApiError(status, message, from_server=True)

    @staticmethod
    def _model(model: type[_M], body: Any, what: str) -> _M:
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            raise ApiError(
                200,
                f"{what} answered with an unexpected shape ({exc.error_count()} problems)",
                hint="The server may be a newer version; please report this.",
            ) from None


def _server_message(payload: Any) -> str | None:
    if isinstance(payload, dict):
        parts = [
            str(payload[k])
            for k in ("error", "message", "hint")
            if isinstance(payload.get(k), str) and payload[k]
        ]
        if parts:
            return " - ".join(dict.fromkeys(parts))
    return None


def _retry_after(payload: Any, headers: httpx.Headers) -> float | None:
    """Seconds to wait, if the server said a usable number (not NaN, not infinite, not
    negative); capped at :data:`MAX_RETRY_AFTER`."""
    value: Any = payload.get("retry_after") if isinstance(payload, dict) else None
    if value is None:
        value = headers.get("Retry-After")
    if isinstance(value, bool):
        return None
    try:
        seconds = float(value) if value is not None else None
    except (TypeError, ValueError, OverflowError):
        return None
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, MAX_RETRY_AFTER)


def _too_big(method: str, path: str, limit: int, status: int) -> ApiError:
    return ApiError(
        status,
        f"{method} {path} answered with more than {limit} bytes; the answer was dropped "
        "unread past that",
        hint="Ask for fewer items (limit=...), or raise ClientSettings.max_response_bytes.",
    )
