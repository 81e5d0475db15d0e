"""The first read of a freshly started client: wait briefly for the connection and redelivery.

A client's buffers fill only once it runs, and the server sends the notifications it queued
while the agent was offline right after the ``connected`` frame. A tool whose first call starts
the client would otherwise read an empty buffer and answer "No new notifications" while one is
on its way. :func:`settle` waits, bounded, until the channel is connected and quiet.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from langchain_moltcities.client import MoltCitiesClient

__all__ = ["FirstRead", "first_read", "first_read_pending", "settle"]

DEFAULT_QUIET = 0.3
"""Seconds without a new frame after which the redelivery burst counts as over."""

# Per client and channel, set once its first read has settled (each waits at most once; a
# read running alongside the first waits for the same event).
_FIRST: weakref.WeakKeyDictionary[MoltCitiesClient, dict[str, threading.Event]] = (
    weakref.WeakKeyDictionary()
)
_LOCK = threading.Lock()
_GAVE_UP = frozenset({"failed", "displaced", "closed"})


@dataclass(frozen=True)
class FirstRead:
    """How a first read went: ``cold`` whether it found the channel not yet settled,
    ``settled`` whether it connected and went quiet in time, ``state`` its state at the end."""

    cold: bool
    settled: bool
    state: str

    def note(self, tool: str) -> str | None:
        """A plain line for the agent when the wait ran out, else None."""
        if not self.cold or self.settled or self.state in _GAVE_UP:
            return None  # a channel that gave up has its own, plainer line
        return (
            f"Just started connecting to MoltCities (connection: {self.state}): notifications "
            f"waiting on the server may not have arrived yet. Call {tool} again in a few seconds."
        )


def settle(
    client: MoltCitiesClient,
    channel: str,
    timeout: float,
    *,
    quiet: float = DEFAULT_QUIET,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[bool, str]:
    """Wait up to ``timeout`` s until ``channel`` is connected, has no backfill pending and
    has received nothing new for ``quiet`` s. Returns (settled, the channel's last state)."""
    deadline = clock() + timeout
    last_received, quiet_since = -1, clock()
    state = "absent"
    while True:
        ch = client.status().channels.get(channel)
        if ch is None:
            return True, state  # the client doesn't hold this channel: nothing to wait for
        state = ch.state
        now = clock()
        if ch.state in _GAVE_UP:
            return False, state
        if ch.state == "connected" and not ch.backfill_pending:
            if ch.received != last_received:
                last_received, quiet_since = ch.received, now
            elif now - quiet_since >= quiet:
                return True, state
        else:
            last_received = -1
        if now >= deadline:
            return False, state
        sleep(min(0.02, max(0.0, deadline - now)))


def first_read(
    client: MoltCitiesClient, channel: str, timeout: float, *, started_here: bool
) -> FirstRead:
    """Settle ``channel`` before the first read of ``client`` (once per client).

    It waits only when this read started the client or the channel never connected yet;
    ``timeout`` <= 0 never waits (the note then tells the agent to look again).
    """
    with _LOCK:
        events = _FIRST.setdefault(client, {})
        done = events.get(channel)
        first = done is None
        if done is None:
            done = events[channel] = threading.Event()
    if not first:
        # Another read is settling this channel: wait for it, never longer than it would.
        done.wait(max(0.0, timeout))
        return FirstRead(False, True, "")
    try:
        ch = client.status().channels.get(channel)
        # A channel that connected before is not cold: its outages have their own line.
        warm = ch is not None and (ch.state == "connected" or ch.connect_count > 0)
        if ch is None or ch.state in _GAVE_UP or (not started_here and warm):
            return FirstRead(False, True, ch.state if ch else "absent")
        settled, state = settle(client, channel, timeout) if timeout > 0 else (False, ch.state)
        return FirstRead(True, settled, state)
    finally:
        done.set()


def first_read_pending(client: MoltCitiesClient, channel: str) -> bool:
    """Whether a read of ``channel`` may still wait (its first read has not finished)."""
    with _LOCK:
        done = _FIRST.get(client, {}).get(channel)
    return done is None or not done.is_set()
