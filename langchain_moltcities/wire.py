"""The socket's inbound side: each message handed straight to the channel as it is read.

``websockets``' ``recv()`` queues every message, wakes the reading task through a future and
an event-loop turn, and hands it over: per message, several times the cost of parsing it.
Here a whole read from the socket (often hundreds of frames in a flood) is handled in the
one ``data_received`` call that unframed it, in order, by a plain function call per message.
Once the link is open, the common frame (a whole, unmasked text or binary message without
extensions) is also unframed here (:func:`split_messages`, pure); ``websockets``' sans-I/O
core is handed every other frame whole (pings, pongs, close, fragments, anything odd) and
does the handshake, size limits, pings and closing as ever. It is handed bytes only at frame
boundaries, so both read one stream in step; anything unexpected hands the rest to it.

Handling inline is its own flow control: the socket is not read again until every message
of the last read was handled. Messages read before a handler is attached (between the
handshake and the channel's session) are kept, a few at a time with reading paused past
that, and handed over first when it is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.frames import Frame, Opcode
from websockets.protocol import OPEN, Event
from websockets.streams import StreamReader

__all__ = ["DirectConnection", "MessageHandler", "frame_size", "split_messages"]

MessageHandler = Callable[[bytes], None]
"""Called with each whole message's bytes (text frames are not decoded: the parser checks
UTF-8 while reading the JSON)."""

_log = logging.getLogger("langchain_moltcities.connection")
_TEXT, _BINARY, _CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONT
_EARLY_HIGH = 16  # messages kept before a handler is attached; reading pauses beyond this
# Where websockets' parser waits between frames (see DirectConnection._at_boundary).
_AT_EOF = StreamReader.at_eof.__code__
_READ_EXACT = StreamReader.read_exact.__code__
_FRAME_PARSE = Frame.parse.__code__
_MISSING = object()
_FIN_TEXT, _FIN_BINARY = 0x81, 0x82  # FIN set, no RSV bits, opcode text / binary


def split_messages(buf: bytes, pos: int, max_size: int) -> tuple[list[bytes], int]:
    """Whole messages framed simply (FIN, no RSV bits, text or binary, unmasked, at most
    ``max_size`` bytes) from ``buf[pos:]``, up to the first frame that is not one or not
    complete; and where that frame starts (``len(buf)`` when all were taken). Pure."""
    out: list[bytes] = []
    n = len(buf)
    while pos + 2 <= n:
        b0 = buf[pos]
        length = buf[pos + 1]  # the mask bit set makes it > 127: not simple
        if (b0 != _FIN_TEXT and b0 != _FIN_BINARY) or length > 127:
            break
        start = pos + 2
        if length == 126:
            start = pos + 4
            if start > n:
                break
            length = (buf[pos + 2] << 8) | buf[pos + 3]
        elif length == 127:
            start = pos + 10
            if start > n:
                break
            length = int.from_bytes(buf[pos + 2 : start], "big")
        end = start + length
        if length > max_size or end > n:
            break
        out.append(buf[start:end])
        pos = end
    return out, pos


def frame_size(buf: bytes | bytearray, pos: int) -> int | None:
    """The whole size of the frame starting at ``buf[pos]``; None until its header is in."""
    n = len(buf)
    if pos + 2 > n:
        return None
    b1 = buf[pos + 1]
    length, header = b1 & 0x7F, 2
    if length == 126:
        header = 4
        if pos + header > n:
            return None
        length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
    elif length == 127:
        header = 10
        if pos + header > n:
            return None
        length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
    return header + (4 if b1 & 0x80 else 0) + length


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
    # In step: websockets' parser waits at a frame boundary and is handed whole frames only.
    _synced = False
    _pending: bytearray | None = None  # the start of a frame whose rest is on its way
    _need = 0  # the bytes that frame needs in all (0: its header is not in yet)
    _max = 0  # the largest message websockets would take
    unframed = 0
    """Messages unframed here rather than by websockets (the rest: see the module doc)."""

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
        # Called for every event of a read, in order, inside data_received: the common case
        # (a whole text message, a handler attached) is handled right here.
        if type(event) is Frame:
            opcode = event.opcode
            if opcode is _TEXT or opcode is _BINARY or opcode is _CONT:
                handler = self.handler
                if event.fin and opcode is not _CONT and handler is not None:
                    data = event.data
                    try:
                        handler(data if type(data) is bytes else bytes(data))
                    except Exception:  # a bug in one message's handling must not break the link
                        _log.exception("handling an inbound message failed")
                else:
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
        """Unframe and hand over; close our side at once after a close frame."""
        if self._synced:
            self._receive_synced(data)
        else:
            super().data_received(data)
            self._synced = self._at_boundary()
        if self.protocol.close_rcvd is not None and not self.transport.is_closing():
            self.transport.close()

    def _at_boundary(self) -> bool:
        """Whether websockets' parser waits for the next frame's header of an open, plain
        link (and this version of websockets looks as expected: if not, it does all the
        work, as before). A byte of that header already read is taken over."""
        p: Any = self.protocol
        if p.state is not OPEN or p.extensions or getattr(p, "debug", True):
            return False
        limits = [
            getattr(p, "max_message_size", getattr(p, "max_size", None)),
            getattr(p, "max_fragment_size", None),
        ]
        self._max = min((x for x in limits if x is not None), default=1 << 62)
        outer, gen = None, p.parser
        while getattr(gen, "gi_yieldfrom", None) is not None:
            outer, gen = gen, gen.gi_yieldfrom
        code = getattr(gen, "gi_code", None)
        buffer = p.reader.buffer
        if code is _AT_EOF:
            return not buffer
        if (
            code is _READ_EXACT
            and getattr(outer, "gi_code", None) is _FRAME_PARSE
            and "head1" not in outer.gi_frame.f_locals  # type: ignore[union-attr]
            and len(buffer) < 2
        ):
            self._pending, self._need = bytearray(buffer), 0
            del buffer[:]
            return True
        return False

    def _plain(self) -> bool:
        """Whether the next whole message may be unframed here: open, no fragment begun."""
        p: Any = self.protocol
        return (
            p.state is OPEN
            and p.close_rcvd is None
            and getattr(p, "current_size", getattr(p, "cur_size", _MISSING)) is None
        )

    def _receive_synced(self, data: bytes) -> None:
        pending = self._pending
        if pending is not None:
            pending += data
            if len(pending) < self._need:
                return
            data, self._pending = bytes(pending), None
        pos, n = 0, len(data)
        plain = self._plain()
        while pos < n:
            if plain:
                messages, pos = split_messages(data, pos, self._max)
                self.unframed += len(messages)
                handler = self.handler
                for message in messages:
                    if handler is None:
                        self._message(message)
                        continue
                    try:
                        handler(message)
                    except Exception:  # a bug in one message's handling must not break the link
                        _log.exception("handling an inbound message failed")
                if pos == n:
                    return
            size = frame_size(data, pos)
            if size is None or pos + size > n:
                if size is not None and size > self._max + 14:
                    break  # too big: websockets refuses it (1009)
                # The start of a frame whose rest is on its way: bounded by what websockets
                # would take in one frame.
                self._pending, self._need = bytearray(data[pos:]), size or 0
                return
            # A whole frame for websockets (ping, pong, close, a fragment...): exactly that
            # frame, so its parser waits between frames again.
            super().data_received(data[pos : pos + size])
            pos += size
            if self.protocol.state is not OPEN or self.protocol.close_rcvd is not None:
                break
            plain = self._plain()
        else:
            return  # every frame taken: still in step
        self._synced = False
        if pos < n:
            super().data_received(data[pos:])
