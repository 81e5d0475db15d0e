"""The shared pool of sync mention callbacks (``CallbackPool``), driven from a real loop."""

from __future__ import annotations

import asyncio
import threading

from langchain_moltcities.callback_pool import CallbackPool
from langchain_moltcities.protocol import NotificationFrame


def _frame(i: int) -> NotificationFrame:
    return NotificationFrame(id=f"notif_{i}", event_type="mention", data={"snippet": f"@a {i}"})


async def test_two_calls_for_one_idle_worker_get_a_second_worker() -> None:
    """Two slow calls arrive at once while the only worker is idle: it takes one, and the other
    must not wait behind it for good (the pool grows after ``patience``)."""
    pool = CallbackPool(threads=2, per_client=2, patience=0.05, idle_exit=60)
    release = threading.Event()
    running: list[str] = []
    lock = threading.Lock()

    def slow(frame: NotificationFrame) -> None:
        with lock:
            running.append(frame.id)
        release.wait(60)

    try:
        await pool.run(lambda frame: None, _frame(0))  # one worker...
        for _ in range(600):
            if pool.idle == 1:  # ...back to waiting for a call
                break
            await asyncio.sleep(0.05)
        assert pool.workers == 1 and pool.idle == 1
        # Both in one loop step: the idle worker cannot have taken the first yet.
        calls = [asyncio.ensure_future(pool.run(slow, _frame(i))) for i in (1, 2)]
        for _ in range(600):  # up to 30 s on a busy machine
            if len(running) == 2:
                break
            await asyncio.sleep(0.05)
        assert sorted(running) == ["notif_1", "notif_2"], running
        assert pool.workers == 2
        release.set()
        await asyncio.wait_for(asyncio.gather(*calls), 30)
    finally:
        release.set()
        pool.shutdown()


async def test_quick_calls_keep_to_one_worker() -> None:
    """Calls that keep up never add a worker (the many-agents thread budget)."""
    pool = CallbackPool(threads=4, per_client=2, patience=0.05, idle_exit=60)
    try:
        for i in range(200):
            await pool.run(lambda frame: None, _frame(i))
        assert pool.workers == 1
    finally:
        pool.shutdown()
