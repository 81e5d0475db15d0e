"""``LoopRunner``: the background thread and event loop that clients run on.

A client does all its I/O on a runner's loop; its sync methods wait for that loop from the
caller's thread and its async twins await it from the caller's loop. By default each client
gets a private runner (its own thread, ended by its ``close()``); pass one shared
``LoopRunner`` to many clients and they all run on one thread: 500 agents cost one thread,
not 500. :func:`start_all` and :func:`close_all` start and close many clients concurrently.

The worker threads of the clients' sync ``on_mention`` callbacks are the runner's too, and
end with it (:class:`~langchain_moltcities.callback_pool.CallbackPool`). Each client keeps its
own ``httpx`` pool: one shared by hundreds of clients cost 2 to 2.5 times the CPU per request under
concurrent load (measured: 300 agents, 900 requests), more than the objects it saved.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Coroutine, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from langchain_moltcities.callback_pool import CallbackPool
from langchain_moltcities.errors import MoltCitiesError, NotConnectedError

if TYPE_CHECKING:
    from langchain_moltcities.client import MoltCitiesClient

__all__ = ["LoopRunner", "aclose_all", "astart_all", "close_all", "start_all"]

_log = logging.getLogger("langchain_moltcities.runtime")
_T = TypeVar("_T")


class LoopRunner:
    """One daemon thread running one asyncio loop, shared by the clients attached to it.

    ``private=True`` (what a client makes for itself when given no runner) ends the thread
    when its last client detaches. A shared runner lives until :meth:`close`; use it as a
    context manager. Safe to use from any thread.

    Sync ``on_mention`` callbacks of all its clients share at most ``callback_threads``
    worker threads: one while they keep up, another only when calls have waited
    ``callback_patience`` seconds for a free one (see callback_pool.py).
    One client runs at most ``callback_threads_per_client`` calls at once (default: all of
    them on a private runner, half on a shared one), so one slow or stuck callback can't take
    every worker from the other clients.
    """

    def __init__(
        self,
        name: str = "moltcities-clients",
        *,
        private: bool = False,
        callback_threads: int = 4,
        callback_threads_per_client: int | None = None,
        callback_patience: float = 0.5,
    ) -> None:
        if not isinstance(callback_threads, int) or callback_threads < 1:
            raise ValueError(f"callback_threads must be an int >= 1, not {callback_threads!r}")
        per_client = callback_threads_per_client
        if per_client is None:
            per_client = callback_threads if private else max(1, callback_threads // 2)
        if not isinstance(per_client, int) or per_client < 1:
            raise ValueError(f"callback_threads_per_client must be an int >= 1, not {per_client!r}")
        self.name = name
        self.private = private
        if not callback_patience >= 0:
            raise ValueError(f"callback_patience must be >= 0 seconds, not {callback_patience!r}")
        self.callbacks = CallbackPool(callback_threads, per_client, patience=callback_patience)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._users = 0
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("running" if self._thread else "not started")
        return f"LoopRunner(name={self.name!r}, clients={self._users}, {state})"

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The running loop, or None before the first client attaches."""
        return self._loop

    @property
    def thread(self) -> threading.Thread | None:
        """The loop thread, while running."""
        return self._thread

    @property
    def closed(self) -> bool:
        """Whether the runtime was closed."""
        return self._closed

    def in_loop_thread(self) -> bool:
        """Whether the caller runs on the loop thread."""
        return self._thread is not None and threading.current_thread() is self._thread

    # ------------------------------------------------------------------ lifecycle

    def attach(self) -> asyncio.AbstractEventLoop:
        """Count one more user and return the loop, starting the thread on first use."""
        with self._lock:
            if self._closed:
                raise NotConnectedError(
                    f"the LoopRunner {self.name!r} was closed; create a new one for new clients"
                )
            if self._thread is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()
                thread = threading.Thread(
                    target=self._thread_main, args=(loop, ready), name=self.name, daemon=True
                )
                thread.start()
                ready.wait()
                self._loop, self._thread = loop, thread
            self._users += 1
            assert self._loop is not None
            return self._loop

    def detach(self) -> None:
        """One user fewer; a private runner stops once nobody uses it."""
        with self._lock:
            self._users = max(0, self._users - 1)
            last = self.private and self._users == 0
        if last:
            self.close()

    def close(self) -> None:
        """Stop the loop and end the thread (idempotent). Clients still attached are cut off:
        close them first (:func:`close_all`) so their sockets end with a close frame."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if threading.current_thread() is not thread:
            thread.join(timeout=10)
        self.callbacks.shutdown()

    def __enter__(self) -> LoopRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _thread_main(self, loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
        finally:
            try:
                leftovers = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in leftovers:
                    task.cancel()
                if leftovers:
                    loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                loop.close()

    # ------------------------------------------------------------------ running work

    def submit(self, coro: Coroutine[Any, Any, _T]) -> concurrent.futures.Future[_T]:
        """Schedule ``coro`` on the loop from any thread."""
        loop = self._loop
        if loop is None or self._closed:
            coro.close()
            raise NotConnectedError("the client's event loop is not running; call start() first")
        return asyncio.run_coroutine_threadsafe(coro, loop)

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float | None = None) -> _T:
        """Run ``coro`` on the loop and wait for it (the sync face)."""
        if self.in_loop_thread():
            coro.close()
            raise MoltCitiesError(
                "a blocking MoltCitiesClient method was called from the client's own event loop "
                "(e.g. in an async on_mention callback); use its async twin (a...) instead"
            )
        return self.submit(coro).result(timeout)

    async def arun(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Await ``coro`` run on the loop, from any event loop (the async face)."""
        if self._loop is not None and asyncio.get_running_loop() is self._loop:
            return await coro
        return await asyncio.wrap_future(self.submit(coro))


# ---------------------------------------------------------------------- many clients at once


def start_all(clients: Iterable[MoltCitiesClient], wait: float | None = None) -> bool:
    """Start every client (their connects run concurrently); with ``wait``, block until all
    are connected and return False if some were not within ``wait`` seconds."""
    chosen = list(clients)
    for client in chosen:
        client.start()  # returns at once: connecting happens on the loop
    if wait is None:
        return True
    deadline = time.monotonic() + wait
    return all(c.wait_connected(max(0.0, deadline - time.monotonic())) for c in chosen)


async def astart_all(clients: Iterable[MoltCitiesClient], wait: float | None = None) -> bool:
    """Async twin of :func:`start_all`."""
    return await asyncio.to_thread(start_all, list(clients), wait)


def close_all(clients: Iterable[MoltCitiesClient]) -> None:
    """Close every client concurrently: one coroutine per runner closes all of its clients,
    so a silent server's close handshake costs its timeout once, not once per client."""
    chosen = list(clients)
    timeout = _CLOSE_GRACE + max((c.settings.close_timeout for c in chosen), default=0.0)
    waits: list[tuple[LoopRunner, int, concurrent.futures.Future[None]]] = []
    for runner, group in _closing_groups(chosen):
        if runner.closed:
            continue  # its loop is gone, and the clients' tasks with it
        if runner.in_loop_thread():
            # Called from the loop itself: it can't wait for itself; the group finishes there.
            runner.submit(_shutdown(group, detach_from=runner))
        else:
            waits.append((runner, len(group), runner.submit(_shutdown(group))))
    for runner, count, fut in waits:
        try:
            fut.result(timeout=timeout)
        except Exception:
            _log.warning("client shutdown did not finish cleanly", exc_info=False)
        for _ in range(count):
            runner.detach()


async def aclose_all(clients: Iterable[MoltCitiesClient]) -> None:
    """Async twin of :func:`close_all`, usable from any event loop."""
    chosen = list(clients)
    here = asyncio.get_running_loop()
    waits: list[tuple[LoopRunner, int, asyncio.Future[None]]] = []
    for runner, group in _closing_groups(chosen):
        if runner.closed:
            continue  # its loop is gone, and the clients' tasks with it
        if runner.loop is here:
            # Its own task, detaching when done: a callback of ours awaiting this would
            # otherwise wait for itself, or be cancelled half-way by it.
            task = here.create_task(_shutdown(group, detach_from=runner))
            waits.append((runner, 0, asyncio.ensure_future(asyncio.shield(task))))
        else:
            waits.append((runner, len(group), asyncio.wrap_future(runner.submit(_shutdown(group)))))
    timeout = _CLOSE_GRACE + max((c.settings.close_timeout for c in chosen), default=0.0)
    for runner, count, fut in waits:
        try:
            await asyncio.wait_for(fut, timeout)
        except Exception:
            _log.warning("client shutdown did not finish cleanly", exc_info=False)
        if count and runner.private:
            await asyncio.to_thread(runner.detach)  # joins the thread
        else:
            for _ in range(count):
                runner.detach()


_CLOSE_GRACE = 10.0  # seconds beyond close_timeout before giving up on a shutdown


def _closing_groups(
    clients: Iterable[MoltCitiesClient],
) -> list[tuple[LoopRunner, list[MoltCitiesClient]]]:
    """Clients to shut down (started, not yet closed; each marked closed now), by runner."""
    groups: dict[int, tuple[LoopRunner, list[MoltCitiesClient]]] = {}
    for client in clients:
        if client._mark_closed():
            groups.setdefault(id(client.runner), (client.runner, []))[1].append(client)
    return list(groups.values())


async def _shutdown(group: list[MoltCitiesClient], detach_from: LoopRunner | None = None) -> None:
    try:
        results = await asyncio.gather(*(c._ashutdown() for c in group), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                _log.warning("a client's shutdown failed: %r", result)
    finally:
        if detach_from is not None:
            for _ in group:
                detach_from.detach()
