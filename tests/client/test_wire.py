"""The inbound fast path (wire.py) against websockets' own reading of the same bytes.

A raw TCP peer writes one scripted byte stream (whole messages of every length encoding,
fragmented ones, pings, unsolicited pongs, then a close) in seeded random pieces; the
messages DirectConnection hands over must be exactly those websockets' ``recv()`` returns.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.frames import Frame, Opcode

from conftest import eventually
from langchain_moltcities.protocol import parse_frame
from langchain_moltcities.wire import DirectConnection, frame_size, split_messages

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _frame(opcode: Opcode, data: bytes, *, fin: bool = True) -> bytes:
    return Frame(opcode, data, fin).serialize(mask=False)


# Every frame the live server sent in the recorded session, as the bytes it sent.
RECORDED = [
    json.dumps(entry["payload"], separators=(",", ":")).encode()
    for line in (Path(__file__).parents[1] / "data" / "live-server-frames.jsonl")
    .read_text(encoding="utf-8")
    .splitlines()
    if line.strip() and (entry := json.loads(line))["direction"] == "recv"
]


def _payload(rng: random.Random, i: int) -> bytes:
    if rng.random() < 0.3:
        return rng.choice(RECORDED)
    size = rng.choice([0, 1, 60, 125, 126, 127, 300, 65535, 65536, 70_000])
    body = f'{{"type":"notification","id":"n{i}","pad":"'.encode()
    return (body + b"x" * size + b'"}')[: max(size, 1)] if size else b""


def script(seed: int, n: int = 300) -> tuple[bytes, list[bytes], list[bytes]]:
    """A server-to-client byte stream, the messages in it, and those sent in one frame."""
    rng = random.Random(seed)
    out: list[bytes] = []
    messages: list[bytes] = []
    whole: list[bytes] = []
    for i in range(n):
        msg = _payload(rng, i)
        roll = rng.random()
        if roll < 0.1 and len(msg) > 2:  # fragmented, sometimes with a ping in between
            cut = rng.randrange(1, len(msg))
            out.append(_frame(Opcode.TEXT, msg[:cut], fin=False))
            if rng.random() < 0.5:
                out.append(_frame(Opcode.PING, b"mid"))
            out.append(_frame(Opcode.CONT, msg[cut:]))
        else:
            out.append(_frame(Opcode.BINARY if roll < 0.2 else Opcode.TEXT, msg))
            whole.append(msg)
        messages.append(msg)
        if rng.random() < 0.05:
            out.append(_frame(rng.choice([Opcode.PING, Opcode.PONG]), b"k"))
    out.append(_frame(Opcode.CLOSE, (1000).to_bytes(2, "big") + b"bye"))
    return b"".join(out), messages, whole


def pieces(stream: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out, pos = [], 0
    while pos < len(stream):
        step = rng.choice([1, 2, 3, 7, 100, 1000, 20_000, 70_000])
        out.append(stream[pos : pos + step])
        pos += step
    return out


def opcodes(stream: bytes | bytearray) -> list[int]:
    """The opcodes of the whole frames in ``stream``."""
    out, pos = [], 0
    while (size := frame_size(stream, pos)) is not None and pos + size <= len(stream):
        out.append(stream[pos] & 0x0F)
        pos += size
    return out


class RawPeer:
    """Answers the WebSocket handshake, then writes ``stream`` in the given pieces."""

    def __init__(self, parts: list[bytes], pause: float) -> None:
        self.parts = parts
        self.pause = pause  # after the handshake, as a server sends "connected" then waits
        self.client_opcodes: list[int] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        key = next(
            line.split(b":", 1)[1].strip()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        accept = base64.b64encode(hashlib.sha1(key + _GUID.encode()).digest()).decode()
        writer.write(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode()
        )
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await writer.drain()
        await asyncio.sleep(self.pause)
        for part in self.parts:
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(0)
        # Read what the client sends (pongs, its close) until its close frame.
        received = bytearray()
        try:
            async with asyncio.timeout(10):
                while 0x8 not in opcodes(received):
                    chunk = await reader.read(65536)
                    if not chunk:
                        break
                    received += chunk
        except TimeoutError:
            pass
        self.client_opcodes = opcodes(received)
        writer.close()


ServeRaw = Callable[[list[bytes], float], Awaitable[tuple[str, RawPeer]]]


@pytest.fixture
async def serve_raw() -> AsyncIterator[ServeRaw]:
    """Start raw peers writing the given pieces; the ws:// URL of each."""
    servers: list[asyncio.Server] = []

    async def start(parts: list[bytes], pause: float = 0.05) -> tuple[str, RawPeer]:
        peer = RawPeer(parts, pause)
        server = await asyncio.start_server(peer.handle, "127.0.0.1", 0)
        servers.append(server)
        return f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/", peer

    yield start
    for server in servers:
        server.close()


async def read_with_recv(url: str) -> list[bytes]:
    got: list[bytes] = []
    async with connect(url, max_size=1 << 20, create_connection=ClientConnection) as ws:
        async for message in ws:
            got.append(message if isinstance(message, bytes) else message.encode())
    return got


async def read_direct(
    url: str, *, attach_after: float = 0.0
) -> tuple[list[bytes], DirectConnection]:
    got: list[bytes] = []
    ws = await connect(url, max_size=1 << 20, create_connection=DirectConnection)
    assert isinstance(ws, DirectConnection)
    if attach_after:
        await asyncio.sleep(attach_after)  # messages read meanwhile are kept, then first
    ws.attach(got.append)
    await asyncio.wait_for(ws.wait_closed(), 30)
    return got, ws


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
async def test_direct_connection_hands_over_what_recv_returns(
    serve_raw: ServeRaw, seed: int
) -> None:
    stream, messages, _ = script(seed)
    parts = pieces(stream, seed)
    pings = opcodes(stream).count(Opcode.PING.value)
    url, peer = await serve_raw(parts, 0.05)
    assert await read_with_recv(url) == messages  # the script is what websockets reads
    assert peer.client_opcodes.count(Opcode.PONG.value) == pings
    url, peer = await serve_raw(parts, 0.05)
    got, ws = await read_direct(url, attach_after=0.05 * (seed % 2))
    assert got == messages
    assert sum(m in RECORDED for m in got) > 50  # the live server's frames among them
    assert [parse_frame(m) for m in got] == [parse_frame(m) for m in messages]
    assert ws.close_code == 1000
    assert ws.unframed > len(messages) // 2  # most went the fast way
    assert peer.client_opcodes.count(Opcode.PONG.value) == pings  # every ping answered
    # A peer that floods straight after the handshake: websockets reads until a read ends
    # between two frames, then the fast way takes over; the same messages either way.
    url, peer = await serve_raw(parts, 0.0)
    got, ws = await read_direct(url)
    assert got == messages
    assert peer.client_opcodes.count(Opcode.PONG.value) == pings


async def test_a_whole_message_inside_a_fragmented_one_fails_the_link(serve_raw: ServeRaw) -> None:
    parts = [
        _frame(Opcode.TEXT, b"1"),
        _frame(Opcode.TEXT, b"par", fin=False),
        _frame(Opcode.TEXT, b"2"),  # RFC 6455: only a continuation (or control) may follow
        _frame(Opcode.CONT, b"t"),
    ]
    url, _ = await serve_raw([b"".join(parts)], 0.05)
    got, ws = await read_direct(url)
    assert got == [b"1"]
    assert ws.protocol.close_sent is not None and ws.protocol.close_sent.code == 1002


async def test_a_message_over_max_size_is_refused_by_websockets(serve_raw: ServeRaw) -> None:
    big = _frame(Opcode.TEXT, b"x" * ((1 << 20) + 1))
    url, _ = await serve_raw([_frame(Opcode.TEXT, b"1"), big[:5000], big[5000:]], 0.05)
    ws = await connect(
        url,
        max_size=1 << 20,
        create_connection=DirectConnection,
    )
    assert isinstance(ws, DirectConnection)
    got: list[bytes] = []
    ws.attach(got.append)
    await asyncio.wait_for(ws.wait_closed(), 30)
    await eventually(lambda: ws.protocol.close_sent is not None, what="a close frame sent")
    assert ws.protocol.close_sent is not None and ws.protocol.close_sent.code == 1009
    assert got == [b"1"]


# --------------------------------------------------------------------- the pure splitter


def test_split_messages_takes_whole_simple_frames_and_stops_at_anything_else() -> None:
    stream, _, whole = script(7, n=200)
    taken: list[bytes] = []
    pos = 0
    while pos < len(stream):
        got, pos = split_messages(stream, pos, 1 << 20)
        taken += got
        if pos < len(stream):
            size = frame_size(stream, pos)
            assert size is not None
            head = Frame(Opcode.TEXT, b"").serialize(mask=False)[:1]
            assert stream[pos] != head[0] or stream[pos + 1] & 0x80  # not simple
            pos += size  # a frame the splitter leaves to websockets
    assert taken == whole  # every message sent in one frame, in order, none invented


def test_split_messages_stops_at_an_incomplete_frame_and_an_oversized_one() -> None:
    whole = _frame(Opcode.TEXT, b"hello")
    long = _frame(Opcode.TEXT, b"y" * 70_000)
    for cut in range(1, len(long)):
        got, pos = split_messages(whole + long[:cut], 0, 1 << 20)
        assert got == [b"hello"] and pos == len(whole)
    got, pos = split_messages(whole + long, 0, 60_000)
    assert got == [b"hello"] and pos == len(whole)
    assert frame_size(long, 0) == len(long)
    assert frame_size(long[:3], 0) is None
    masked = Frame(Opcode.TEXT, b"abc").serialize(mask=True)
    assert split_messages(masked, 0, 1 << 20) == ([], 0)
    assert frame_size(masked, 0) == len(masked)
