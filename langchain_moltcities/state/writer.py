"""The write-behind thread the persistent stores share: queue, batch, commit, report.

Writes are queued without I/O (:meth:`BatchWriter.submit`, called from the client's loop)
and handed to the backend's ``write`` in batches: everything queued within
``flush_interval`` seconds of the first write, or ``batch_size`` writes, whichever comes
first. :meth:`BatchWriter.nudge` ends the current batch at once (the client's state keeper
uses it so its own tick is the only delay), :meth:`BatchWriter.wait` blocks until every
write queued before it was committed.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

from langchain_moltcities.state.base import Op, StateError, StateStore

__all__ = ["Batch", "BatchWriter", "WrittenBehind"]

Batch = list[tuple[str, list[Op]]]


class _Marker:
    """Ends a batch; ``wait`` blocks on it until that batch is committed."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None


class BatchWriter:
    """One daemon thread that commits queued writes in batches through ``write``.

    ``write(batch)`` returns the error that kept the batch from being stored (None when it
    was). ``retry_after()`` says how long to wait for new writes before calling
    ``write([])`` again to retry held-back ones (None: nothing held back, wait for writes).
    ``on_exit()`` runs on the thread after the last batch, once closed.
    """

    def __init__(
        self,
        write: Callable[[Batch], BaseException | None],
        *,
        name: str,
        flush_interval: float,
        batch_size: int,
        retry_after: Callable[[], float | None] = lambda: None,
        on_exit: Callable[[], None] = lambda: None,
    ) -> None:
        self.flush_interval, self.batch_size = flush_interval, batch_size
        self._write, self._retry_after, self._on_exit = write, retry_after, on_exit
        self._queue: queue.SimpleQueue[tuple[str, list[Op]] | _Marker | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, agent_id: str, ops: list[Op]) -> None:
        """Queue ``ops`` for ``agent_id`` (no I/O)."""
        self._queue.put((agent_id, ops))

    def nudge(self) -> None:
        """Commit what is queued now instead of gathering more (returns at once)."""
        self._queue.put(_Marker())

    def wait(self, timeout: float) -> tuple[bool, BaseException | None]:
        """Block until every write queued so far is committed: (finished in time, error)."""
        marker = _Marker()
        self._queue.put(marker)
        return marker.done.wait(timeout), marker.error

    def stop(self, timeout: float = 30.0) -> None:
        """Commit what is queued, then end the thread."""
        self._queue.put(None)
        self._thread.join(timeout=timeout)

    def _next(self) -> tuple[str, list[Op]] | _Marker | None:
        while True:
            try:
                return self._queue.get(timeout=self._retry_after())
            except queue.Empty:
                self._write([])  # nothing new: try the held-back writes again

    def _loop(self) -> None:
        while True:
            first = self._next()
            batch = [first]
            # Gather for up to flush_interval (or batch_size ops), then commit them together.
            deadline = time.monotonic() + self.flush_interval
            count = len(first[1]) if isinstance(first, tuple) else 0
            while count < self.batch_size and not isinstance(batch[-1], _Marker | None):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
                batch.append(item)
                if isinstance(item, tuple):
                    count += len(item[1])
            error = self._write([b for b in batch if isinstance(b, tuple)])
            for b in batch:
                if isinstance(b, _Marker):
                    b.error = error
                    b.done.set()
            if batch[-1] is None:
                self._on_exit()
                return


class WrittenBehind(StateStore):
    """A store whose writes go through a :class:`BatchWriter` (``self._writer``)."""

    _writer: BatchWriter
    _closed: bool = False
    # How errors name the store ("state file <path>", "state <url>").
    _what = "state"

    def submit(self, agent_id: str, ops: list[Op]) -> None:
        """Queue ``ops`` for ``agent_id``; the writer thread stores them in batches."""
        if not self._closed:
            self._writer.submit(agent_id, ops)

    def nudge(self) -> None:
        """Commit what is queued now (returns at once)."""
        if not self._closed:
            self._writer.nudge()

    def flush(self, timeout: float = 10.0) -> None:
        """Wait (up to ``timeout``) until every queued change is written."""
        if self._closed:
            return
        done, error = self._writer.wait(timeout)
        if not done:
            raise StateError(
                f"{self._what} {self.location}: writes did not finish in {timeout:g} s"
            )
        if error is not None:
            raise StateError(f"{self._what} {self.location}: {self._failed(error)}")

    def _failed(self, error: BaseException) -> str:
        return f"writing failed: {error}"
