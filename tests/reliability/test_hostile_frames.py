"""Hypothesis-generated hostile frames from a raw WebSocket peer (real sockets).

Whatever arrives, the client neither crashes nor stops: every bad frame is counted once in
``status()``, the log stays short and readable, and a valid frame sent afterwards is delivered.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from langchain_moltcities import ClientSettings, MoltCitiesClient

from .peer import PEER_KEY, Frame, HostilePeer, RawText, notification

MAX_FRAME = 64 * 1024
KNOWN_TYPES = {"connected", "notification", "chat", "presence", "pong", "subscribed", "error"}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=15,
)


def _not_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return True
    return False


def _not_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


unknown_type = st.text(max_size=300).filter(lambda t: t.strip().lower() not in KNOWN_TYPES)
bad_frames = st.one_of(
    st.text(min_size=1, max_size=200).filter(_not_json),
    json_values.filter(lambda v: not isinstance(v, dict)).map(json.dumps),
    st.builds(
        lambda t, extra: json.dumps({**extra, "type": t}),
        unknown_type,
        st.dictionaries(st.text(max_size=8).filter(lambda k: k != "type"), json_values, max_size=4),
    ),
    st.dictionaries(st.sampled_from(["id", "data", "agent"]), json_values).map(json.dumps),
    # Known types with the wrong field types.
    st.builds(
        lambda i, d: json.dumps({"type": "notification", "id": i, "event_type": "x", "data": d}),
        st.integers() | st.lists(st.integers(), max_size=2),
        json_values,
    ),
    st.builds(
        lambda m: json.dumps({"type": "chat", "id": "c1", "message": m}),
        st.dictionaries(st.text(max_size=4), st.integers(), min_size=1),
    ),
    # Huge strings (under the size limit) and deep nesting.
    st.integers(10_000, MAX_FRAME - 1000).map(
        lambda n: json.dumps({"type": "x.huge", "blob": "y" * n})
    ),
    st.integers(500, 30_000).map(lambda n: "[" * n + "]" * n),
    st.integers(500, 2_500).map(lambda n: '{"type":"x.deep","a":' * n + "1" + "}" * n),
    # Binary frames that are not UTF-8, and text frames that are not either (a protocol
    # error the client tolerates: the one frame is counted, the link kept).
    st.binary(min_size=1, max_size=300).filter(_not_utf8),
    st.binary(min_size=1, max_size=300).filter(_not_utf8).map(RawText),
)


def _until(predicate: Any, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_hostile_frames_never_stop_the_client() -> None:
    records = _Records()
    root = logging.getLogger("langchain_moltcities")
    old_level = root.level
    root.addHandler(records)
    root.setLevel(logging.DEBUG)
    sent_bad = 0
    oversized = 0
    not_utf8_text = 0
    try:
        with (
            HostilePeer() as peer,
            MoltCitiesClient(
                api_key=PEER_KEY,
                base_url=peer.url,
                channels=("personal",),
                settings=ClientSettings(
                    ping_interval=0.3,
                    pong_timeout=5.0,
                    backoff_base=0.02,
                    backoff_cap=0.1,
                    close_timeout=0.2,
                    max_frame_size=MAX_FRAME,
                ),
            ) as client,
        ):
            assert client.wait_connected(timeout=15)
            serial = iter(range(1_000_000))

            def personal() -> Any:
                return client.status().channels["personal"]

            def deliver_marker() -> None:
                marker = f"ok{next(serial)}"
                peer.send(notification(marker))
                got: list[str] = []

                def arrived() -> bool:
                    got.extend(n.id for n in client.read_notifications().items)
                    return marker in got

                _until(arrived, f"marker {marker}")
                assert got == [marker], f"bad frames were delivered as notifications: {got}"

            @settings(
                max_examples=30,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            )
            @given(frames=st.lists(bad_frames, min_size=1, max_size=6), oversize=st.booleans())
            @example(frames=[RawText(b"\xff\xfe{"), b"\x80"], oversize=True)  # always covered
            def check(frames: list[Frame], oversize: bool) -> None:
                nonlocal sent_bad, oversized, not_utf8_text
                before = personal()
                peer.send(*frames)
                deliver_marker()
                after = personal()
                counted = (after.invalid_frames + after.unknown_frames) - (
                    before.invalid_frames + before.unknown_frames
                )
                assert counted == len(frames), (counted, frames)
                assert after.connect_count == before.connect_count  # bad frames don't drop us
                assert after.state == "connected"
                sent_bad += len(frames)
                not_utf8_text += sum(isinstance(f, RawText) for f in frames)
                if oversize:
                    peer.send(json.dumps({"type": "x.big", "blob": "z" * (MAX_FRAME + 10)}))
                    _until(
                        lambda: (
                            personal().oversized_frames == before.oversized_frames + 1
                            and personal().connect_count == before.connect_count + 1
                            and personal().state == "connected"
                        ),
                        "the oversized frame to be refused and the link replaced",
                    )
                    oversized += 1
                    deliver_marker()

            check()
            final = personal()
            assert final.invalid_frames + final.unknown_frames == sent_bad
            assert final.oversized_frames == oversized
            assert final.state == "connected"
    finally:
        root.removeHandler(records)
        root.setLevel(old_level)

    # Readable, not a flood: a handful of warnings about bad frames however many arrived,
    # each one short line; the rest only at DEBUG.
    bad_warnings = [
        r
        for r in records.records
        if r.levelno >= logging.WARNING and "max_frame_size" not in r.getMessage()
    ]
    assert len(bad_warnings) <= 6, [r.getMessage() for r in bad_warnings]
    assert all(len(r.getMessage()) <= 400 for r in records.records)
    assert all("\n" not in r.getMessage() for r in bad_warnings)
    assert sent_bad > 30 and oversized > 0 and not_utf8_text > 0
