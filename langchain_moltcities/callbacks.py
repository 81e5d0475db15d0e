"""``on_mention`` calls: bounded in flight, sync ones on worker threads shared per runner.

A slow callback and a mention flood would otherwise queue one future per mention without
end (hundreds of MB, and a ``close()`` that waits for them). Past ``limit`` calls in flight,
new ones are dropped and counted: the mentions themselves stay in the notification buffer.
Used only from the client's loop thread, so plain counters suffice.

Sync callbacks run on the :class:`~langchain_moltcities.callback_pool.CallbackPool` that the
clients of one ``LoopRunner`` share: 500 clients with sync callbacks cost the pool's few
threads (one while the callbacks keep up), not four each.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from langchain_moltcities.callback_pool import CallbackPool
from langchain_moltcities.listeners import MentionCallback, call_async, is_async_callable
from langchain_moltcities.protocol import NotificationFrame

__all__ = ["CallbackBound", "MentionCalls"]

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


class MentionCalls:
    """One client's ``on_mention`` calls: bounded in flight (:class:`CallbackBound`), async
    ones as tasks on the loop, sync ones on the runner's :class:`CallbackPool` at most
    ``pool.per_client`` at a time."""

    def __init__(self, limit: int, pool: CallbackPool) -> None:
        self.bound = CallbackBound(limit)
        self._pool = pool
        self._lane: asyncio.Semaphore | None = None

    def start(self, cb: MentionCallback, frame: NotificationFrame) -> asyncio.Task[None] | None:
        """Start one call (on the running loop); None when the bound refused it."""
        if not self.bound.admit():
            return None
        loop = asyncio.get_running_loop()
        if is_async_callable(cb):
            task = loop.create_task(call_async(cb, frame))
        else:
            task = loop.create_task(self._in_worker(cb, frame))
        task.add_done_callback(self.bound.done)
        return task

    async def _in_worker(self, cb: MentionCallback, frame: NotificationFrame) -> None:
        pool = self._pool
        if self._lane is None:
            self._lane = asyncio.Semaphore(pool.per_client)
        async with self._lane:
            await pool.run(cb, frame)
