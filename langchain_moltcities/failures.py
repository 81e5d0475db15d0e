"""Why a client is not connected, as an error a program can act on.

:func:`connect_failure` reads a :class:`~langchain_moltcities.client.ClientStatus` (what each
channel last did) and picks the error that says what to fix: the key
(:class:`AuthenticationError`), the address or network (:class:`NetworkError`), or the state
of the client (:class:`NotConnectedError`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from langchain_moltcities.errors import (
    AuthenticationError,
    MoltCitiesError,
    NetworkError,
    NotConnectedError,
)

if TYPE_CHECKING:
    from langchain_moltcities.client import ClientStatus

__all__ = ["connect_failure"]


def connect_failure(status: ClientStatus, timeout: float) -> MoltCitiesError:
    """The error explaining why ``status`` is not connected after ``timeout`` seconds."""
    down = {n: c for n, c in status.channels.items() if c.state != "connected"}
    if status.closed:
        return NotConnectedError("the client is closed; create a new MoltCitiesClient")
    if not status.channels:
        return NotConnectedError("the client holds no channel; pass channels=('personal', ...)")
    errors = [c.last_error or "" for c in down.values()]
    if any("rejected the API key" in e for e in errors):
        return AuthenticationError(
            "MoltCities rejected the API key at connect. Check MOLTCITIES_API_KEY (or the "
            "api_key argument): it should be the 'mc_...' key from registration."
        )
    displaced = [n for n, c in down.items() if c.state == "displaced"]
    if displaced:
        return NotConnectedError(
            f"{', '.join(displaced)}: displaced (close 4003) by another connection of this "
            "agent; run one client per agent, then start a new client"
        )
    reasons = "; ".join(
        f"{n}: {c.state}" + (f" ({c.last_error})" if c.last_error else "") for n, c in down.items()
    )
    if any(e.startswith("could not connect") for e in errors):
        detail = next(e for e in errors if e.startswith("could not connect"))
        return NetworkError(status.base_url, f"{detail} after {timeout:g} s")
    return NotConnectedError(
        f"not connected after {timeout:g} s ({reasons}); check base_url and the network, or "
        "wait longer"
    )
