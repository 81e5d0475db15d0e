"""Shutting one client down on its loop: what ``close()`` and ``close_all`` run per client.

The order is what keeps many clients closing at once fast against a server that never
answers a close frame: every close frame leaves first, so the short waits for replies (see
closing.py) overlap each other and the rest of the work, and nothing here waits on a thread
unless it must (a persistent store's last write).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Mapping

from langchain_moltcities.connection import Channel
from langchain_moltcities.rest import RestApi
from langchain_moltcities.state import StateStore

__all__ = ["shut_down"]


async def shut_down(
    *,
    channels: Mapping[str, Channel],
    cancel: Collection[asyncio.Task[None] | None],
    keeper_stop: Callable[[], Awaitable[None]] | None,
    store: StateStore | None,
    callbacks: Collection[asyncio.Future[object]],
    grace: float,
    rest: RestApi | None,
) -> None:
    """Close ``channels`` (close frames first), cancel ``cancel``, store what the keeper
    holds, close ``store`` (ours to close, or None), give running ``callbacks`` ``grace``
    seconds and cancel what is left, then close ``rest``."""
    for channel in channels.values():
        channel.begin_close()  # close frames out first: their wait overlaps the rest
    tasks = [t for t in cancel if t is not None]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.gather(*(c.stop() for c in channels.values()), return_exceptions=True)
    if keeper_stop is not None:
        await keeper_stop()
    if store is not None:
        if store.persistent:
            await asyncio.to_thread(store.close)  # a file or a server: not on the loop
        else:
            store.close()
    pending = [t for t in callbacks if not t.done()]
    if pending:
        # Give running mention callbacks a moment, then cancel what is left. A sync one
        # stuck in a worker keeps that worker; the runner's pool ends without waiting for it.
        await asyncio.wait(pending, timeout=grace)
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    if rest is not None:
        await rest.aclose()
