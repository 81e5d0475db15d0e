"""A bound on ``on_mention`` calls in flight (sync ones waiting for a worker, async tasks).

A slow callback and a mention flood would otherwise queue one future per mention without
end (hundreds of MB, and a ``close()`` that waits for them). Past ``limit`` calls in flight,
new ones are dropped and counted: the mentions themselves stay in the notification buffer.
Used only from the client's loop thread, so plain counters suffice.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["CallbackBound"]

_log = logging.getLogger("langchain_moltcities.client")


class CallbackBound:
    """Counts callback calls in flight; refuses (and counts) those past ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self.dropped = 0
        self._warned = False

    def admit(self) -> bool:
        """Take one more call in flight; False (counted, warned once) when the bound is reached."""
        if self.in_flight >= self.limit:
            self.dropped += 1
            if not self._warned:
                # Once per episode: a flood must not flood the log too.
                self._warned = True
                _log.warning(
                    "on_mention: %d calls already in flight; dropping new ones (counted in "
                    "status().callbacks_dropped) until the callback catches up",
                    self.limit,
                )
            return False
        self.in_flight += 1
        return True

    def done(self, _future: Any = None) -> None:
        """One call in flight finished."""
        self.in_flight -= 1
        if self.in_flight == 0:
            self._warned = False
