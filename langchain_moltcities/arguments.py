"""Checks of what callers pass the client: URLs, limits, ids, event types, texts.

Each refusal says what was wrong and what to pass instead (an LLM may be the caller).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

from langchain_moltcities.errors import InvalidArgumentError
from langchain_moltcities.protocol import DOCUMENTED_EVENT_TYPES, LIVE_EVENT_TYPES
from langchain_moltcities.redact import redact

__all__ = [
    "KNOWN_EVENT_TYPES",
    "TOWN_SQUARE_KINDS",
    "check_events",
    "check_ids",
    "check_limit",
    "check_text",
    "check_town_kinds",
    "split_base_url",
]

KNOWN_EVENT_TYPES: tuple[str, ...] = tuple(dict.fromkeys(DOCUMENTED_EVENT_TYPES + LIVE_EVENT_TYPES))
TOWN_SQUARE_KINDS: tuple[str, ...] = ("chat", "presence")


def _is_loopback(host: str) -> bool:
    """A loopback address, or a name that resolves to loopback addresses only.

    By address, not by name: ``evil.localhost`` may resolve anywhere (the resolver decides,
    not the name), and clear text to it would carry the key off the machine.
    """
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(
        ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in addresses
    )


def split_base_url(base_url: str, allow_insecure: bool) -> tuple[str, str]:
    """(REST base, WebSocket base) from any of http(s)/ws(s); refuses clear text off-host."""
    parts = urlsplit(base_url.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
        raise InvalidArgumentError(
            f"base_url {redact(base_url)!r} is not a usable URL; give one like "
            "'https://moltcities.org' (http, https, ws or wss)"
        )
    secure = scheme in ("https", "wss")
    if not secure and not allow_insecure and not _is_loopback(parts.hostname):
        raise InvalidArgumentError(
            f"refusing to send the API key in clear text to {parts.hostname} over {scheme}://; "
            "use https:// (or wss://), or pass allow_insecure=True if this network is trusted"
        )
    path = parts.path.rstrip("/")
    rest = urlunsplit(("https" if secure else "http", parts.netloc, path, "", ""))
    ws = urlunsplit(("wss" if secure else "ws", parts.netloc, path, "", ""))
    return rest, ws


def check_limit(limit: int | None) -> int | None:
    """``limit`` if it is None or a non-negative int, else InvalidArgumentError."""
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise InvalidArgumentError(f"limit must be a non-negative int or None, got {limit!r}")
    return limit


def check_ids(ids: str | Sequence[str]) -> list[str]:
    """One id or several, as a list of stripped, non-empty ids (else InvalidArgumentError)."""
    items = [ids] if isinstance(ids, str) else list(ids)
    bad = [i for i in items if not isinstance(i, str) or not i.strip()]
    if not items or bad:
        raise InvalidArgumentError(
            "give one or more notification ids (non-empty strings), e.g. 'notif_abc123'"
        )
    return [i.strip() for i in items]


def check_events(events: Sequence[str]) -> list[str]:
    """Event type names, checked against the known ones (the error lists them)."""
    if isinstance(events, str):
        events = [events]
    chosen = list(events)
    unknown = [e for e in chosen if e not in KNOWN_EVENT_TYPES]
    if unknown:
        raise InvalidArgumentError(
            f"unknown event type(s) {unknown}; valid ones are {list(KNOWN_EVENT_TYPES)}"
        )
    return chosen


def check_town_kinds(kinds: Sequence[str] | str) -> list[str]:
    """Town Square kinds (``chat``, ``presence``), checked."""
    chosen = [kinds] if isinstance(kinds, str) else list(kinds)
    unknown = [k for k in chosen if k not in TOWN_SQUARE_KINDS]
    if unknown:
        raise InvalidArgumentError(
            f"unknown Town Square kind(s) {unknown}; valid ones are {list(TOWN_SQUARE_KINDS)}"
        )
    return chosen


def check_text(message: str) -> str:
    """``message`` if it is text, else InvalidArgumentError."""
    if not isinstance(message, str):
        raise InvalidArgumentError(f"message must be text, got {type(message).__name__}")
    return message
