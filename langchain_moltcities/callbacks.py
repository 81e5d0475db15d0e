"""``on_mention`` calls: bounded in flight, sync ones on worker threads shared per runner.

A slow callback and a mention flood would otherwise queue one future per mention without
end (hundreds of MB, and a ``close()`` that waits for them). Past ``limit`` calls in flight,
new ones are dropped and counted: the mentions themselves stay in the notification buffer.
Used only from the client's loop thread, so plain counters suffice.

Sync callbacks run on a :class:`CallbackPool` that the clients of one ``LoopRunner`` share:
500 clients with sync callbacks cost the pool's few threads, not four each.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from typing import Any

from langchain_moltcities.listeners import (
    MentionCallback,
    call_async,
    call_sync,
    is_async_callable,
)
from langchain_moltcities.protocol import NotificationFrame

__all__ = ["CallbackBound", "CallbackPool", "MentionCalls"]

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


class CallbackPool:
    """Worker threads for sync ``on_mention`` callbacks, shared by the clients of one runner.

    ``threads`` workers in all, made on first use, whatever the number of clients; one client
    runs at most ``per_client`` calls at once (its others wait their turn on the loop, within
    its :class:`CallbackBound`), so a client whose callback is slow or stuck holds at most that
    many workers and the others keep theirs.
    """

    def __init__(self, threads: int, per_client: int, name: str = "moltcities-mention") -> None:
        if threads < 1 or per_client < 1:
            raise ValueError(f"callback threads must be >= 1, not {threads} / {per_client}")
        self.threads = threads
        self.per_client = min(per_client, threads)
        self._name = name
        self._lock = threading.Lock()
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._busy = 0  # calls running in a worker now (written by the workers)
        self._closed = False

    @property
    def busy(self) -> int:
        """Calls running in a worker now."""
        return self._busy

    async def run(self, cb: MentionCallback, frame: NotificationFrame) -> None:
        """Run ``cb(frame)`` in a worker and wait for it (from the runner's loop)."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._get_executor(), self._call, cb, frame, loop)

    def _call(
        self, cb: MentionCallback, frame: NotificationFrame, loop: asyncio.AbstractEventLoop
    ) -> None:
        with self._lock:
            self._busy += 1
        try:
            call_sync(cb, frame, loop)
        finally:
            with self._lock:
                self._busy -= 1

    def _get_executor(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._lock:
            if self._closed:
                raise RuntimeError("the callback pool was shut down with its runner")
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=self.threads, thread_name_prefix=self._name
                )
            return self._executor

    def shutdown(self) -> None:
        """End the workers: idle ones at once (waited for), a call still running is left to
        finish on its own (never waited for: it may be stuck, or waiting for the loop)."""
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
            stuck = self._busy > 0
        if executor is not None:
            executor.shutdown(wait=not stuck, cancel_futures=True)


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
