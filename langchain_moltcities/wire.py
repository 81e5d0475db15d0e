"""The socket's inbound side: each message handed straight to the channel as it is read.

``websockets``' ``recv()`` queues every message, wakes the reading task through a future and
an event-loop turn, and hands it over: per message, several times the cost of parsing it.
Here a whole read from the socket (often hundreds of frames in a flood) is handled in the
one ``data_received`` call that unframed it, in order, by a plain function call per message.
``websockets``' sans-I/O core still does all the framing, size limits, pings and closing.

Handling inline is its own flow control: the socket is not read again until every message
of the last read was handled. Messages read before a handler is attached (between the
handshake and the channel's session) are kept, a few at a time with reading paused past
that, and handed over first when it is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from websockets.asyncio.client import ClientConnection
from websockets.frames import Frame, Opcode
from websockets.protocol import Event

__all__ = ["DirectConnection", "MessageHandler"]

MessageHandler = Callable[[bytes], None]
"""Called with each whole message's bytes (text frames are not decoded: the parser checks
UTF-8 while reading the JSON)."""

_log = logging.getLogger("langchain_moltcities.connection")
_TEXT, _BINARY, _CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONT
_EARLY_HIGH = 16  # messages kept before a handler is attached; reading pauses beyond this


class DirectConnection(ClientConnection):
    """A client connection that hands messages to :attr:`handler` instead of ``recv()``.

    Also ends the connection as soon as the server's close frame arrives: ``websockets``
    answers it, then waits for the server to close TCP; the live server keeps it open for
    about 10 s after a 4003 or 4000, during which the channel would still look connected.
    The close frame is the verdict: close our side at once.
    """

    handler: MessageHandler | None = None
    _early: list[bytes] | None = None
    _fragments: bytearray | None = None
    _early_paused = False

    def attach(self, handler: MessageHandler) -> None:
        """Send every message from now on to ``handler``, the ones already read first."""
        early, self._early = self._early, None
        self.handler = handler
        for message in early or ():
            self._hand_over(handler, message)
        if self._early_paused:
            self._early_paused = False
            if not self.transport.is_closing():
                self.transport.resume_reading()

    def detach(self) -> None:
        """Stop handing messages over (those read later are dropped with the connection)."""
        self.handler = None
        self._early = []

    def process_event(self, event: Event) -> None:
        """Data frames to the handler; the rest (handshake, pings, close) as websockets does."""
        # Called for every event of a read, in order, inside data_received.
        if type(event) is Frame:
            opcode = event.opcode
            if opcode is _TEXT or opcode is _BINARY or opcode is _CONT:
                self._data_frame(event)
                return
        super().process_event(event)

    def _data_frame(self, frame: Frame) -> None:
        data = frame.data
        if frame.opcode is not _CONT:
            if frame.fin:
                self._message(data if type(data) is bytes else bytes(data))
                return
            # The protocol bounds the whole message by max_size, fragments included.
            self._fragments = bytearray(data)
            return
        parts = self._fragments
        if parts is None:  # the protocol refuses a stray continuation; never reached
            return
        parts += data
        if frame.fin:
            self._fragments = None
            self._message(bytes(parts))

    def _message(self, message: bytes) -> None:
        handler = self.handler
        if handler is not None:
            self._hand_over(handler, message)
            return
        if self._early is None:
            self._early = []
        self._early.append(message)
        if len(self._early) >= _EARLY_HIGH and not self._early_paused:
            self._early_paused = True
            self.transport.pause_reading()

    def _hand_over(self, handler: MessageHandler, message: bytes) -> None:
        try:
            handler(message)
        except Exception:  # a bug in handling one message must not break the connection
            _log.exception("handling an inbound message failed")

    def data_received(self, data: bytes) -> None:
        """Read, unframe and hand over; close our side at once after a close frame."""
        super().data_received(data)
        if self.protocol.close_rcvd is not None and not self.transport.is_closing():
            self.transport.close()
