"""Calling the agent's mention listeners: async ones on the client's loop, plain ones on a
small thread pool, a raising one logged and never fatal to the client."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable

from langchain_moltcities.protocol import NotificationFrame

__all__ = ["MentionCallback", "call_async", "call_sync", "is_async_callable"]

_log = logging.getLogger("langchain_moltcities.client")

MentionCallback = Callable[[NotificationFrame], Awaitable[None] | None]


def is_async_callable(cb: object) -> bool:
    """Whether calling ``cb`` returns a coroutine (an async function or callable object)."""
    return inspect.iscoroutinefunction(cb) or inspect.iscoroutinefunction(
        getattr(cb, "__call__", None)  # noqa: B004 - callable objects with async __call__
    )


async def call_async(cb: MentionCallback, frame: NotificationFrame) -> None:
    """Run a mention callback on the client's loop; an error is logged, never raised."""
    try:
        result = cb(frame)
        if inspect.isawaitable(result):
            await result
    except asyncio.CancelledError:
        raise
    except Exception:
        _log.exception("on_mention callback %r raised; the client carries on", cb)


def call_sync(
    cb: MentionCallback, frame: NotificationFrame, loop: asyncio.AbstractEventLoop
) -> None:
    """Run a mention callback (from a worker thread; an awaitable it returns runs on
    ``loop``); an error is logged, never raised."""
    try:
        result = cb(frame)
        if inspect.isawaitable(result):

            async def _await() -> None:
                await result

            asyncio.run_coroutine_threadsafe(_await(), loop).result()
    except Exception:
        _log.exception("on_mention callback %r raised; the client carries on", cb)
