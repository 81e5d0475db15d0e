"""REST calls of the MoltCities API over one ``httpx.AsyncClient``.

Thin I/O: builds requests, maps unsuccessful answers to the package's errors, returns the
protocol models. The client runs these on its own loop; its sync methods wrap them.
"""

from __future__ import annotations

import logging
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, SecretStr, ValidationError

from langchain_moltcities.errors import (
    ApiError,
    AuthenticationError,
    InvalidArgumentError,
    MoltCitiesError,
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

__all__ = ["CHAT_MAX_CHARS", "RestApi"]

CHAT_MAX_CHARS = 500
_log = logging.getLogger("langchain_moltcities.rest")
_M = TypeVar("_M", bound=BaseModel)


class RestApi:
    """MoltCities REST endpoints used by the client."""

    def __init__(self, base_url: str, api_key: SecretStr, *, timeout: float) -> None:
        self._key = api_key
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            headers={"User-Agent": "langchain-moltcities"},
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    # ------------------------------------------------------------------ endpoints

    async def post_chat(self, message: str) -> ChatFrame:
        text = message.strip()
        if not text:
            raise InvalidArgumentError("chat message is empty; write 1 to 500 characters")
        if len(text) > CHAT_MAX_CHARS:
            raise InvalidArgumentError(
                f"chat message is {len(text)} characters; the limit is {CHAT_MAX_CHARS}: "
                "shorten it or split it into several posts"
            )
        body = await self._request("POST", "/api/chat", json={"message": text})
        return self._model(ChatPostResponse, body, "POST /api/chat").message.to_chat()

    async def chat_history(self, after: str | None = None, limit: int | None = None) -> ChatHistory:
        params: dict[str, Any] = {}
        if after:
            params["after"] = after
        if limit is not None:
            if not 1 <= limit <= 200:
                raise InvalidArgumentError(f"limit must be between 1 and 200, got {limit}")
            params["limit"] = limit
        body = await self._request("GET", "/api/chat", params=params)
        return self._model(ChatHistory, body, "GET /api/chat")

    async def list_notifications(
        self, *, unread: bool = True, limit: int | None = None, since: str | None = None
    ) -> NotificationsPage:
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
        return self._model(NotificationsPage, body, "GET /api/notifications")

    async def mark_read(self, notification_id: str) -> None:
        if not notification_id or "/" in notification_id:
            raise InvalidArgumentError(
                f"{notification_id!r} is not a notification id; pass the id of a notification"
            )
        await self._request("POST", f"/api/notifications/{notification_id}/read")

    async def mark_read_many(self, ids: list[str]) -> None:
        """``POST /api/notifications/read`` with up to 100 ids (one request for a batch)."""
        if not 1 <= len(ids) <= 100:
            raise InvalidArgumentError(f"mark 1 to 100 notifications read at once, not {len(ids)}")
        await self._request("POST", "/api/notifications/read", json={"ids": ids})

    async def me(self) -> MeResponse:
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
        headers = {"Authorization": f"Bearer {self._key.get_secret_value()}"}
        try:
            response = await self._http.request(method, path, headers=headers, **kwargs)
        except httpx.TimeoutException:
            raise MoltCitiesError(
                f"{method} {path} timed out; the server is slow or unreachable, try again later"
            ) from None
        except httpx.HTTPError as exc:
            detail = redact(str(exc) or type(exc).__name__, [self._key.get_secret_value()])
            raise MoltCitiesError(
                f"{method} {path} failed: {detail}; check base_url and the network"
            ) from None
        if response.status_code < 400:
            if response.status_code == 204 or not response.content:
                return None
            try:
                return response.json()
            except ValueError:
                raise ApiError(
                    response.status_code,
                    f"{method} {path} answered with something that is not JSON",
                    hint="Check base_url: it should point at a MoltCities server.",
                ) from None
        raise self._error(response, f"{method} {path}")

    def _error(self, response: httpx.Response, what: str) -> MoltCitiesError:
        status = response.status_code
        payload: Any = None
        try:
            payload = response.json()
        except ValueError:
            payload = None
        message = _server_message(payload) or response.reason_phrase or "no explanation given"
        message = redact(message, [self._key.get_secret_value()])
        if status in (401, 403):
            return AuthenticationError(
                f"{what}: MoltCities rejected the API key (HTTP {status}: {message}). Check "
                "MOLTCITIES_API_KEY (or the api_key argument).",
                status=status,
            )
        if status == 429:
            return RateLimitError(_retry_after(payload, response), message)
        return ApiError(status, message)

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


def _retry_after(payload: Any, response: httpx.Response) -> float | None:
    value: Any = payload.get("retry_after") if isinstance(payload, dict) else None
    if value is None:
        value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
