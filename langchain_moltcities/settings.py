"""Tunable intervals and limits of the client, and environment configuration.

Every interval is configurable so tests can use tiny ones (a 120 s ping becomes 0.2 s).
"""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

__all__ = [
    "DEFAULT_BASE_URL",
    "ENV_API_KEY",
    "ENV_BASE_URL",
    "MAX_PING_INTERVAL",
    "ClientSettings",
    "api_key_from_env",
    "base_url_from_env",
]

ENV_API_KEY = "MOLTCITIES_API_KEY"
ENV_BASE_URL = "MOLTCITIES_BASE_URL"
DEFAULT_BASE_URL = "https://moltcities.org"
# The server closes connections idle (no ping) for 5 minutes and checks every 60 s,
# so a ping must go out at least every 4 minutes to be safe.
MAX_PING_INTERVAL = 240.0


class ClientSettings(BaseModel):
    """Timing and size knobs of :class:`~langchain_moltcities.MoltCitiesClient`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ping_interval: float = Field(120.0, gt=0, description="Seconds between app-level pings.")
    pong_timeout: float = Field(
        20.0, gt=0, description="Seconds to wait for a pong before calling the link dead."
    )
    data_timeout: float | None = Field(
        None,
        gt=0,
        description="Seconds without any inbound frame before reconnecting "
        "(default: ping_interval + pong_timeout).",
    )
    backoff_base: float = Field(1.0, gt=0, description="First reconnect delay in seconds.")
    backoff_cap: float = Field(30.0, gt=0, description="Longest reconnect delay in seconds.")
    backoff_jitter: float = Field(
        0.5, ge=0, le=1, description="Fraction of each delay that is randomised."
    )
    stable_after: float = Field(
        30.0, ge=0, description="A connection up this long resets the backoff."
    )
    connect_timeout: float = Field(15.0, gt=0, description="Handshake timeout in seconds.")
    poll_interval: float = Field(15.0, gt=0, description="Seconds between polls (poll transport).")
    close_timeout: float = Field(
        1.0,
        ge=0,
        description="Seconds to wait for the close handshake (the live server never answers).",
    )
    max_frame_size: int = Field(
        1 << 20, gt=0, description="Largest inbound WebSocket message accepted, in bytes."
    )
    request_timeout: float = Field(
        15.0, gt=0, description="Total deadline of each REST call (connect to last byte), in s."
    )
    max_response_bytes: int = Field(
        4 << 20, gt=0, description="Largest REST answer read, in bytes; a larger one is an error."
    )
    proxy: str | None = Field(
        None,
        description="Proxy URL for REST and WebSocket alike (http://, https:// or socks5://). "
        "None: direct connections; HTTP(S)_PROXY in the environment is never used.",
    )
    max_pending_callbacks: int = Field(
        256,
        gt=0,
        description="on_mention calls (sync or async) in flight; past it new ones are dropped "
        "and counted (callbacks_dropped).",
    )
    dedupe_memory: int = Field(10_000, gt=0, description="How many recent ids are remembered.")
    buffer_max_bytes: int = Field(
        64 << 20,
        ge=1024,
        description="Most bytes each unread buffer holds; past it the oldest items are dropped "
        "(counted as overflow).",
    )
    max_item_bytes: int = Field(
        64 << 10,
        ge=1024,
        description="Largest item a buffer holds whole; longer texts in it are cut in memory, "
        "with a note giving their full length.",
    )
    backfill_limit: int = Field(
        200, gt=0, le=200, description="Page size of the Town Square back-fill after a reconnect."
    )
    ws_path: str = Field("/api/notifications/connect", description="WebSocket endpoint path.")
    mention_grace: float = Field(
        1.0,
        ge=0,
        description="Seconds a mention recovered from chat, whose author's handle is unknown, "
        "waits for the server's own mention (which may name it) before listeners get it.",
    )

    @field_validator("ping_interval")
    @classmethod
    def _ping_not_too_rare(cls, value: float) -> float:
        if value > MAX_PING_INTERVAL:
            raise ValueError(
                f"ping_interval {value:g} s is too long: the server drops connections without a "
                f"ping for 5 minutes; use at most {MAX_PING_INTERVAL:g} s"
            )
        return value

    @model_validator(mode="after")
    def _silence_outlasts_a_ping(self) -> ClientSettings:
        if self.data_timeout is not None and self.data_timeout <= self.ping_interval:
            raise ValueError(
                f"data_timeout {self.data_timeout:g} s must be longer than ping_interval "
                f"{self.ping_interval:g} s: on a quiet channel only pongs arrive, one per ping, "
                "so a shorter data_timeout would drop healthy connections"
            )
        return self

    @model_validator(mode="after")
    def _buffer_holds_an_item(self) -> ClientSettings:
        if self.buffer_max_bytes < self.max_item_bytes:
            raise ValueError(
                f"buffer_max_bytes ({self.buffer_max_bytes}) must be at least max_item_bytes "
                f"({self.max_item_bytes}) so a buffer can hold one whole item"
            )
        return self

    @property
    def effective_data_timeout(self) -> float:
        """Seconds of inbound silence after which a connection is presumed half-open."""
        if self.data_timeout is not None:
            return self.data_timeout
        return self.ping_interval + self.pong_timeout


def api_key_from_env() -> SecretStr | None:
    """The key in ``MOLTCITIES_API_KEY``, if set and not blank."""
    value = os.environ.get(ENV_API_KEY, "").strip()
    return SecretStr(value) if value else None


def base_url_from_env() -> str:
    """``MOLTCITIES_BASE_URL`` or the public server."""
    return os.environ.get(ENV_BASE_URL, "").strip() or DEFAULT_BASE_URL
