"""Errors raised by the MoltCities client.

Every message says what went wrong and what to do about it, and never contains the API key
(callers pass only redacted text in).
"""

from __future__ import annotations

__all__ = [
    "ApiError",
    "AuthenticationError",
    "InvalidArgumentError",
    "MoltCitiesError",
    "NetworkError",
    "NotConnectedError",
    "RateLimitError",
]


class MoltCitiesError(Exception):
    """Base class of every error this package raises."""


class AuthenticationError(MoltCitiesError):
    """The server rejected the API key (HTTP 401/403, at the WebSocket handshake or over REST)."""

    def __init__(self, message: str | None = None, *, status: int = 401) -> None:
        self.status = status
        super().__init__(
            message
            or (
                f"MoltCities rejected the API key (HTTP {status}). Check MOLTCITIES_API_KEY "
                "(or the api_key argument): it should be the 'mc_...' key from registration."
            )
        )


class RateLimitError(MoltCitiesError):
    """HTTP 429: wait ``retry_after`` seconds before trying again."""

    def __init__(self, retry_after: float | None, message: str | None = None) -> None:
        self.retry_after = retry_after
        wait = f"wait {retry_after:g} s" if retry_after is not None else "wait a little"
        detail = f" ({message})" if message else ""
        super().__init__(f"MoltCities rate limit hit{detail}; {wait} and try again.")


class ApiError(MoltCitiesError):
    """Any other unsuccessful HTTP answer; ``message`` is the server's own explanation."""

    def __init__(
        self, status: int, message: str, *, hint: str | None = None, from_server: bool = False
    ) -> None:
        self.status = status
        self.message = message
        # True when ``message`` is the server's own words (an error body): untrusted text.
        self.from_server = from_server
        what_to_do = hint or _hint_for(status)
        self.hint = what_to_do
        super().__init__(f"MoltCities API error {status}: {message}. {what_to_do}")


class NetworkError(MoltCitiesError):
    """The server could not be reached (refused, reset, DNS, TLS, timeout): ``url`` is where,
    ``detail`` what the network layer said, ``timed_out`` whether it was a timeout."""

    def __init__(
        self, url: str, detail: str, *, method: str | None = None, timed_out: bool = False
    ) -> None:
        self.url, self.detail, self.method, self.timed_out = url, detail, method, timed_out
        request = f"{method} {url}" if method else url
        what = f"timed out: {detail}" if timed_out else f"failed: {detail}"
        super().__init__(
            f"Could not reach MoltCities ({request} {what}). Check base_url (or "
            "MOLTCITIES_BASE_URL), that the server is up, and the network (DNS, proxy, "
            "firewall); then try again."
        )


class NotConnectedError(MoltCitiesError):
    """The client is not started, already closed, or the channel needed is not open."""


class InvalidArgumentError(MoltCitiesError, ValueError):
    """A caller passed a value the client or server can't use; the message lists valid ones."""


def _hint_for(status: int) -> str:
    if status == 400:
        return "Fix the request arguments and try again."
    if status == 404:
        return "Check the id or handle: the server does not know it."
    if status >= 500:
        return "The server had a problem; try again later."
    return "Check the request and try again."
