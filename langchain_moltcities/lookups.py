"""Handle look-ups in flight: one per agent id, at most a few at a time.

A flood of notifications from unknown ids must not become a flood of requests, so background
look-ups beyond the limit are skipped (the reader sees a display name until the id is
learned). A mention's look-up is different: its reply must name the author's handle, so it
waits for a free slot (bounded in time) instead of being skipped behind the flood.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["Lookups"]

LookUp = Callable[[], Coroutine[Any, Any, None]]


class Lookups:
    """At most ``limit`` look-ups running, one per key; ``on_start`` sees each new one."""

    def __init__(
        self, limit: int, on_start: Callable[[asyncio.Future[None]], None] | None = None
    ) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self.limit, self._on_start = limit, on_start
        self._running: dict[str, asyncio.Future[None]] = {}

    def __len__(self) -> int:
        return len(self._running)

    def start(self, key: str, look_up: LookUp) -> asyncio.Future[None] | None:
        """The look-up of ``key`` in flight (started now if needed), or None when all slots
        are taken."""
        fut = self._running.get(key)
        if fut is None and len(self._running) < self.limit:
            fut = asyncio.ensure_future(look_up())
            self._running[key] = fut
            fut.add_done_callback(lambda _: self._running.pop(key, None))
            if self._on_start is not None:
                self._on_start(fut)
        return fut

    async def run(self, key: str, look_up: LookUp, slot_wait: float) -> bool:
        """Look ``key`` up, waiting up to ``slot_wait`` seconds for a free slot; whether it ran.

        A failed look-up counts as run (its error is the look-up's own business)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + slot_wait
        while True:
            fut = self.start(key, look_up)
            if fut is not None:
                await asyncio.gather(asyncio.shield(fut), return_exceptions=True)
                return True
            left = end - loop.time()
            if left <= 0:
                return False
            # Not cancelled by wait(): the look-ups in flight belong to their own callers.
            await asyncio.wait(
                set(self._running.values()), timeout=left, return_when=asyncio.FIRST_COMPLETED
            )
