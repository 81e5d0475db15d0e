"""``CallbackPool``: the worker threads of sync ``on_mention`` callbacks, one pool per runner.

Elastic and bounded: no thread until the first call, one while callbacks keep up, another
(up to ``threads``) only when calls have waited ``patience`` seconds for a free worker, and a
worker idle for ``idle_exit`` seconds ends. So 500 clients on one runner with quick sync
callbacks cost one worker thread (the many-agents target of three threads in all holds), a
slow or stuck callback makes room for the others' calls instead of starving them, and the
clients' per-client share (see callbacks.py) keeps one client from taking every worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from typing import NamedTuple

from langchain_moltcities.listeners import MentionCallback, call_sync
from langchain_moltcities.protocol import NotificationFrame

__all__ = ["CallbackPool"]


class _Call(NamedTuple):
    cb: MentionCallback
    frame: NotificationFrame
    loop: asyncio.AbstractEventLoop
    done: asyncio.Future[None]
    queued_at: float


class CallbackPool:
    """Up to ``threads`` workers shared by the clients of one runner; one client runs at most
    ``per_client`` calls at once."""

    def __init__(
        self,
        threads: int,
        per_client: int,
        *,
        patience: float = 0.5,
        idle_exit: float = 30.0,
        name: str = "moltcities-mention",
    ) -> None:
        if threads < 1 or per_client < 1:
            raise ValueError(f"callback threads must be >= 1, not {threads} / {per_client}")
        self.threads = threads
        self.per_client = min(per_client, threads)
        self.patience = patience
        self.idle_exit = idle_exit
        self._name = name
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._workers: set[threading.Thread] = set()
        self._idle = 0  # workers waiting for a call
        self._busy = 0  # calls running now
        self._pending = 0  # calls queued and not yet taken (kept in step with _idle)
        self._made = 0
        self._checking = False
        self._closed = False

    @property
    def busy(self) -> int:
        """Calls running in a worker now."""
        return self._busy

    @property
    def idle(self) -> int:
        """Workers waiting for a call now."""
        return self._idle

    @property
    def workers(self) -> int:
        """Worker threads alive now."""
        return len(self._workers)

    async def run(self, cb: MentionCallback, frame: NotificationFrame) -> None:
        """Run ``cb(frame)`` in a worker and wait for it (from the runner's loop)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the callback pool was shut down with its runner")
            self._queue.put(_Call(cb, frame, loop, done, time.monotonic()))
            self._pending += 1
            if not self._workers:
                self._spawn()
            elif self._waiting() and not self._checking and len(self._workers) < self.threads:
                # More calls than idle workers: if one still waits after `patience`, add one.
                self._checking = True
                loop.call_later(self.patience, self._check)
        await done

    def _check(self) -> None:
        """(On the loop) add a worker if calls have waited ``patience`` for a free one."""
        with self._lock:
            self._checking = False
            if self._closed or not self._waiting():
                return
            if len(self._workers) < self.threads:
                self._spawn()
            if len(self._workers) < self.threads:
                self._checking = True
                asyncio.get_running_loop().call_later(self.patience, self._check)

    def _waiting(self) -> bool:  # holding the lock
        # Whether some queued call has no idle worker to take it. Not "no worker is idle",
        # nor the queue's size: an idle worker takes one call, and (on a busy machine) may
        # have taken it from the queue but not yet said so when the next call comes; both
        # counts change together under the lock, so their difference is always right.
        return self._pending > self._idle

    def _spawn(self) -> None:  # holding the lock
        self._made += 1
        worker = threading.Thread(target=self._work, name=f"{self._name}_{self._made}", daemon=True)
        self._workers.add(worker)
        worker.start()

    def _work(self) -> None:
        me = threading.current_thread()
        while True:
            with self._lock:
                self._idle += 1
            try:
                call = self._queue.get(timeout=self.idle_exit)
            except queue.Empty:
                call = None
            with self._lock:
                self._idle -= 1
                if call is None:
                    if self._queue.empty() or self._closed:
                        self._workers.discard(me)
                        return
                    continue  # a call came in just as the wait ended
                self._pending -= 1
                self._busy += 1
            try:
                call_sync(call.cb, call.frame, call.loop)
            finally:
                with self._lock:
                    self._busy -= 1
                with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                    call.loop.call_soon_threadsafe(_finish, call.done)

    def shutdown(self) -> None:
        """End the workers: idle ones at once (waited for); a call still running is left to
        finish on its own, never waited for (it may be stuck, or waiting for the loop)."""
        with self._lock:
            self._closed = True
            workers, stuck = list(self._workers), self._busy > 0
            while True:  # calls never started: nobody waits for them any more
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
                self._pending -= 1
        for _ in workers:
            self._queue.put(None)
        if not stuck:
            current = threading.current_thread()
            for worker in workers:
                if worker is not current:
                    worker.join(timeout=5)


def _finish(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)
