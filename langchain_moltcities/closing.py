"""Ending a WebSocket promptly, whichever side closes and whether or not the other answers.

Two live-server habits make the default ``websockets`` close slow:

- The server never answers a client's close frame (and holds TCP open). Nothing it says after
  our close frame reaches the agent (the channel's reader is gone by then), so the reply is
  worth a short wait at most, :data:`CLOSE_REPLY_WAIT`, during which what arrives is thrown
  away unparsed: with many clients closing at once the server broadcasts every departure
  (presence ``left``) to everyone still connected, and parsing and queueing that flood was
  most of the CPU and of the short-lived objects (and so of the collector's pauses) of a
  ``close_all``. Reading on, rather than pausing, drains the socket, so the end is a FIN, not
  a reset that could cost the server our close frame; a server's EOF ends the wait at once.
- After its own close frame (4003, 4000) the server keeps TCP open about 10 s: the close
  frame is the verdict, so our side closes at once (wire.py's connection does that).
"""

from __future__ import annotations

import asyncio
import contextlib

from websockets.asyncio.client import ClientConnection
from websockets.protocol import State

from langchain_moltcities.wire import DirectConnection

__all__ = ["CLOSE_REPLY_WAIT", "ClosingConnection", "begin_closing"]

CLOSE_REPLY_WAIT = 0.25
"""Longest wait (seconds) for the server to end the connection after our close frame,
however long the client's ``close_timeout``: a server that answers does so within a round
trip, and many clients closing at once wait in parallel, so this bounds ``close_all`` too."""


class ClosingConnection(DirectConnection):
    """The channel's connection (see wire.py), which can stop reading frames once we close."""

    _discarding = False

    def discard_incoming(self) -> None:
        """From now on, drop what arrives unread and end at the server's EOF."""
        self._discarding = True
        self.handler = None
        with contextlib.suppress(Exception):
            self.transport.resume_reading()  # paused when messages wait for a handler

    def data_received(self, data: bytes) -> None:
        """Hand over (see wire.py), unless we closed: then throw ``data`` away unread."""
        if not self._discarding:
            super().data_received(data)

    def eof_received(self) -> None:
        """The server ended TCP; after our close frame that is the end: no parse, no wait."""
        if self._discarding:
            self.transport.abort()
            return
        super().eof_received()


def begin_closing(ws: ClientConnection, close_timeout: float) -> asyncio.Future[None]:
    """Send the close frame now and end TCP at the server's EOF, or ourselves after at most
    ``min(close_timeout, CLOSE_REPLY_WAIT)``; returns a future done once TCP is gone.

    No task, no timeout context, no cancellation: with a thousand sockets closing at once,
    what ``ws.close()`` allocates for each (and the tracebacks of its timeouts) outlived
    the young generations and brought on a full collection in the middle of ``close_all``.
    """
    with contextlib.suppress(Exception):
        if ws.protocol.state is State.OPEN:
            ws.protocol.send_close(1000, "client closing")
            for data in ws.protocol.data_to_send():
                if data:
                    ws.transport.write(data)
    if isinstance(ws, ClosingConnection):
        ws.discard_incoming()
    lost = ws.connection_lost_waiter
    if not lost.done():
        wait = min(close_timeout, CLOSE_REPLY_WAIT)
        # abort(), not close(): close() would keep the socket until a peer that reads
        # nothing drains our buffer, and on TLS wait up to 30 s for its close_notify.
        timer = asyncio.get_running_loop().call_later(wait, ws.transport.abort)
        lost.add_done_callback(lambda _: timer.cancel())
    return lost
