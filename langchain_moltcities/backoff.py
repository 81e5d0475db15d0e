"""Reconnect policy: delays with jitter, and what each close code or handshake failure means.

Pure: no I/O, no clock of its own (callers pass monotonic times), so every rule is unit-tested.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum

__all__ = [
    "Action",
    "Backoff",
    "Decision",
    "decide_close",
    "decide_handshake_status",
    "decide_network_error",
]

CLOSE_NORMAL = 1000
CLOSE_ABNORMAL = 1006
CLOSE_IDLE_TIMEOUT = 4000
CLOSE_DISPLACED = 4003


class Action(Enum):
    """What a channel does after its connection ends or fails to open."""

    RECONNECT = "reconnect"
    STOP = "stop"  # deliberate end: don't reconnect, not an error
    FATAL = "fatal"  # can't work without the caller changing something (e.g. the key)


@dataclass(frozen=True)
class Decision:
    """What to do after a close or failed connect: the action, the state to show and why."""

    action: Action
    state: str  # channel state to show: backing_off, closed, displaced, failed
    reason: str


def decide_close(code: int | None, reason: str = "") -> Decision:
    """Policy for an open connection that closed with ``code`` (None: no close frame)."""
    said = f" ({reason})" if reason else ""
    if code == CLOSE_NORMAL:
        return Decision(Action.STOP, "closed", f"server closed the connection normally{said}")
    if code == CLOSE_DISPLACED:
        return Decision(
            Action.STOP,
            "displaced",
            "displaced (4003): another connection for this agent and channel replaced this one"
            f"{said}; not reconnecting so the two don't fight. Close the other client, then "
            "start this one again",
        )
    if code == CLOSE_IDLE_TIMEOUT:
        return Decision(
            Action.RECONNECT, "backing_off", f"server closed an idle connection (4000){said}"
        )
    if code is None or code == CLOSE_ABNORMAL:
        return Decision(Action.RECONNECT, "backing_off", "connection lost without a close frame")
    return Decision(Action.RECONNECT, "backing_off", f"connection closed with code {code}{said}")


def decide_handshake_status(status: int) -> Decision:
    """Policy for a WebSocket handshake the server answered with an HTTP ``status``."""
    if status in (401, 403):
        return Decision(
            Action.FATAL,
            "failed",
            f"the server rejected the API key (HTTP {status}); check MOLTCITIES_API_KEY or the "
            "api_key argument, then start the client again",
        )
    if status == 429:
        return Decision(Action.RECONNECT, "backing_off", "handshake rate-limited (HTTP 429)")
    if status >= 500:
        return Decision(
            Action.RECONNECT, "backing_off", f"server error at handshake (HTTP {status})"
        )
    return Decision(
        Action.RECONNECT,
        "backing_off",
        f"the server refused the WebSocket handshake (HTTP {status}); check base_url",
    )


def decide_network_error(description: str) -> Decision:
    """Policy for a connect attempt that failed below HTTP (refused, reset, timeout, DNS)."""
    return Decision(Action.RECONNECT, "backing_off", f"could not connect: {description}")


class Backoff:
    """Exponential reconnect delays with jitter and a cap.

    The attempt count resets only when a connection stayed up ``stable_after`` seconds, so a
    server that accepts and then closes at once sees growing delays, not a reconnect storm.
    """

    def __init__(
        self,
        base: float = 1.0,
        cap: float = 30.0,
        *,
        jitter: float = 0.5,
        stable_after: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        if base <= 0 or cap <= 0:
            raise ValueError("backoff base and cap must be positive")
        if not 0 <= jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")
        self.base = base
        self.cap = cap
        self.jitter = jitter
        self.stable_after = stable_after
        self.attempts = 0
        self._rng = rng or random.Random()
        self._up_since: float | None = None

    def ceiling(self) -> float:
        """The un-jittered delay the next call to :meth:`next_delay` is drawn under."""
        # min() before the power would still overflow for huge attempt counts; clamp the exponent.
        return float(min(self.cap, self.base * 2.0 ** min(self.attempts, 62)))

    def next_delay(self) -> float:
        """Seconds to wait before the next attempt; counts the attempt."""
        ceiling = self.ceiling()
        self.attempts += 1
        # "Equal jitter": never below (1 - jitter) of the ceiling, so delays still grow.
        return ceiling * (1 - self.jitter * self._rng.random())

    def connected(self, now: float) -> None:
        """A connection opened at monotonic time ``now``."""
        self._up_since = now

    def disconnected(self, now: float) -> None:
        """The connection ended at ``now``; reset if it had been stable long enough."""
        if self._up_since is not None and now - self._up_since >= self.stable_after:
            self.attempts = 0
        self._up_since = None

    def unstable(self) -> None:
        """The current connection ended on a fault of its own (e.g. a frame over the limit):
        however long it was up, it does not reset the delays. A server that answers every
        (re)subscription with an oversized echo then sees growing delays, not a storm."""
        self._up_since = None

    def reset(self) -> None:
        """Start the delays from the first again (the link stayed up long enough)."""
        self.attempts = 0
        self._up_since = None
