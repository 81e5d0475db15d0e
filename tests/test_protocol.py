"""Protocol models: every spec example and recorded live frame parses; the parser never raises."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from langchain_moltcities.protocol import (
    MENTION_EVENT_TYPES,
    AckFrame,
    ChatFrame,
    ChatHistory,
    ChatPostResponse,
    ConnectedFrame,
    ErrorFrame,
    InvalidFrame,
    MeResponse,
    NotificationFrame,
    NotificationsPage,
    PingFrame,
    PongFrame,
    PresenceFrame,
    SubscribedFrame,
    SubscribeFrame,
    UnknownFrame,
    encode_client_frame,
    parse_client_frame,
    parse_frame,
    parse_object,
    parse_timestamp,
)

DATA = Path(__file__).parent / "data"
SPEC = (DATA / "moltcities-websocket-api.md").read_text(encoding="utf-8")
RECORDED = [
    json.loads(line)
    for line in (DATA / "live-server-frames.jsonl").read_text(encoding="utf-8").splitlines()
    if line.strip()
]


def _spec_examples() -> list[Any]:
    out = []
    for block in re.findall(r"```json\n(.*?)```", SPEC, re.S):
        # Two examples use placeholders for "anything here"; make them the empty object.
        block = re.sub(r"\{\s*//[^\n]*\n\s*\}", "{}", block)
        block = block.replace("{ ... }", "{}")
        out.append(json.loads(block))
    return out


SPEC_EXAMPLES = _spec_examples()
CLIENT_TYPES = {"ping", "ack", "subscribe"}


def test_spec_has_the_examples_we_expect() -> None:
    assert len(SPEC_EXAMPLES) == 21


@pytest.mark.parametrize("example", SPEC_EXAMPLES, ids=lambda e: str(e.get("type", "rest")))
def test_every_spec_example_parses(example: dict[str, Any]) -> None:
    kind = example.get("type")
    if kind in CLIENT_TYPES:
        client_frame = parse_client_frame(json.dumps(example))
        assert client_frame is not None
        assert json.loads(encode_client_frame(client_frame)) == example
    elif kind is None:
        page = NotificationsPage.model_validate(example)
        assert page.notifications[0].to_notification().event_type == "inbox.message"
    else:
        frame = parse_frame(json.dumps(example))
        assert not isinstance(frame, InvalidFrame | UnknownFrame), frame
        assert frame.type == kind


def test_documented_notifications_normalise() -> None:
    by_type = {
        e["event_type"]: parse_frame(json.dumps(e))
        for e in SPEC_EXAMPLES
        if e.get("type") == "notification" and e["data"]
    }
    inbox = by_type["inbox.message"]
    assert isinstance(inbox, NotificationFrame)
    assert (inbox.sender_id, inbox.sender_handle, inbox.text) == (
        "agent_sender",
        "sender-agent",
        "Just wanted to say hi...",
    )
    mention = by_type["mention"]
    assert isinstance(mention, NotificationFrame)
    assert mention.is_mention and mention.sender_handle == "other-agent"
    assert mention.chat_message_id == "chat_xyz"
    job = by_type["job.application"]
    assert isinstance(job, NotificationFrame)
    assert (job.sender_handle, job.subject) == ("skilled-agent", "Build a Discord bot")
    status = by_type["job.status"]
    assert isinstance(status, NotificationFrame)
    assert status.text == "status in_progress -> completed"
    assert status.sender_id == "agent_poster"
    guestbook = by_type["guestbook.entry"]
    assert isinstance(guestbook, NotificationFrame)
    assert type(guestbook.typed_data).__name__ == "GuestbookEntryData"


def _recorded_server_frames() -> list[dict[str, Any]]:
    return [
        r["payload"] for r in RECORDED if r["direction"] == "recv" and "_event" not in r["payload"]
    ]


def test_every_recorded_live_frame_parses() -> None:
    frames = _recorded_server_frames()
    assert len(frames) == 44
    for payload in frames:
        frame = parse_frame(json.dumps(payload))
        assert not isinstance(frame, InvalidFrame | UnknownFrame), payload
        assert frame.to_dict()["type"] == payload["type"]


def test_live_notifications_normalise_to_the_same_accessors() -> None:
    notifs = [
        f
        for p in _recorded_server_frames()
        if isinstance(f := parse_frame(json.dumps(p)), NotificationFrame)
    ]
    bravo = "vn3zkYxujAYr69sDWqd3I"
    assert notifs and all(n.sender_id == bravo for n in notifs)
    assert all(n.text for n in notifs)
    mentions = [n for n in notifs if n.is_mention]
    assert [m.event_type for m in mentions] == ["mention.chat", "mention.chat"]
    assert mentions[0].sender_name == "ProbeBravo"
    assert mentions[0].chat_message_id == "chat_cU-kNArV4boHo1aV"
    inbox = next(n for n in notifs if n.event_type == "inbox.message")
    assert inbox.sender_handle == "probe-bravo"
    # Live pushes carry no `queued` key; redelivered ones carry queued: true.
    assert [n.queued for n in notifs].count(True) == 4


def test_recorded_rest_bodies_parse() -> None:
    for r in RECORDED:
        if r["direction"] != "http" or not isinstance(r["payload"].get("body"), dict):
            continue
        channel, body = r["channel"], r["payload"]["body"]
        if channel.startswith("GET /api/chat"):
            history = ChatHistory.model_validate(body)
            chats = [m.to_chat() for m in history.messages]
            assert all(c.agent_handle == "probe-bravo" for c in chats)
        elif channel == "POST /api/chat":
            assert ChatPostResponse.model_validate(body).message.to_chat().id.startswith("chat_")
        elif channel.startswith("GET /api/notifications?") or channel == "GET /api/notifications":
            page = NotificationsPage.model_validate(body)
            events = {n.to_notification().event_type for n in page.notifications}
            assert events <= {"inbox.message", "guestbook.entry"}
            assert all(n.to_notification().created for n in page.notifications)
        elif channel == "GET /api/me":
            assert MeResponse.model_validate(body).agent.id


def test_unknown_type_and_event_type_are_kept() -> None:
    frame = parse_frame('{"type": "weather", "sky": "blue"}')
    assert isinstance(frame, UnknownFrame)
    assert frame.raw == {"type": "weather", "sky": "blue"}
    notif = parse_frame(
        '{"type":"notification","id":"n1","event_type":"site.followed","data":{"follower":"x"}}'
    )
    assert isinstance(notif, NotificationFrame)
    assert notif.event_type == "site.followed" and notif.data == {"follower": "x"}
    assert type(notif.typed_data).__name__ == "GenericData"


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ("this is {not json", "not JSON"),
        ("null", "not an object"),
        ("[]", "not an object"),
        (b"\xff\xfe", "UTF-8"),
        ('{"type": "notification"}', "unexpected shape"),
        ('{"type": "presence", "event": 3}', "unexpected shape"),
    ],
)
def test_bad_frames_give_a_clear_error_value(raw: str | bytes, needle: str) -> None:
    frame = parse_frame(raw)
    assert isinstance(frame, InvalidFrame)
    assert needle in frame.error


def test_extra_keys_survive() -> None:
    frame = parse_frame('{"type":"pong","timestamp":5,"region":"eu"}')
    assert isinstance(frame, PongFrame)
    assert frame.to_dict() == {"type": "pong", "timestamp": 5, "region": "eu"}


@pytest.mark.parametrize(
    "frame",
    [PingFrame(), AckFrame(notification_id="notif_1"), SubscribeFrame(events=["mention"])],
)
def test_client_frames_round_trip(frame: PingFrame | AckFrame | SubscribeFrame) -> None:
    assert parse_client_frame(encode_client_frame(frame)) == frame


def test_parse_client_frame_rejects_garbage() -> None:
    assert parse_client_frame("{") is None
    assert parse_client_frame('{"type":"ack"}') is None
    assert parse_client_frame('{"type":"chat","message":"x"}') is None


def test_timestamps_of_every_form() -> None:
    iso = parse_timestamp("2026-02-01T21:30:00.000Z")
    plain = parse_timestamp("2026-02-01 21:30:00")
    assert iso is not None and plain is not None and iso == plain
    assert parse_timestamp(1706823000000) is not None
    assert parse_timestamp("yesterday") is None
    assert parse_timestamp(None) is None


def test_types_of_frames() -> None:
    assert isinstance(parse_frame('{"type":"connected","agent_id":"a"}'), ConnectedFrame)
    assert isinstance(parse_frame('{"type":"subscribed","events":[]}'), SubscribedFrame)
    assert isinstance(parse_frame('{"type":"error","code":4009}'), ErrorFrame)
    assert isinstance(parse_frame('{"type":"chat","id":"c"}'), ChatFrame)
    presence = parse_frame('{"type":"presence","event":"timeout","agent":{"handle":"h"}}')
    assert isinstance(presence, PresenceFrame) and presence.agent.handle == "h"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
frame_types = st.sampled_from(
    ["connected", "notification", "pong", "subscribed", "error", "chat", "presence", "zzz"]
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_arbitrary_json_never_raises(value: Any) -> None:
    frame = parse_frame(json.dumps(value))
    assert frame.type is None or isinstance(frame.type, str)


@settings(max_examples=300, deadline=None)
@given(frame_types, st.dictionaries(st.text(max_size=12), json_values, max_size=6))
def test_known_types_with_arbitrary_fields_never_raise(kind: str, fields: dict[str, Any]) -> None:
    frame = parse_frame(json.dumps({**fields, "type": kind}))
    assert frame.type is None or isinstance(frame.type, str)


# Valid notifications (random fields rarely make one: `id` and `event_type` are required),
# with the keys the accessors read, so every accessor meets every value shape.
ACCESSOR_KEYS = [
    *("from", "from_agent_id", "by_agent_id", "author_id", "author_agent_id", "applicant_id"),
    *("agent_id", "from_handle", "by_handle", "applicant_handle", "handle", "author_name"),
    *("author", "name", "subject", "job_title", "preview", "snippet", "message_preview"),
    *("message", "proposal", "body", "old_status", "new_status", "message_id"),
]
scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=16)
sender_objects = st.dictionaries(
    st.sampled_from(["agent_id", "id", "handle", "display_name", "name"]), scalars, max_size=4
)
notifications = st.fixed_dictionaries(
    {
        "type": st.just("notification"),
        "id": st.text(min_size=1, max_size=24),
        "event_type": st.sampled_from(
            ["inbox.message", "guestbook.entry", "job.application", "job.status", "site.followed"]
        )
        | st.sampled_from(sorted(MENTION_EVENT_TYPES))
        | st.text(max_size=12),
        "data": st.dictionaries(
            st.sampled_from(ACCESSOR_KEYS) | st.text(max_size=8),
            scalars | sender_objects | st.lists(scalars, max_size=3),
            max_size=8,
        ),
    },
    optional={
        "created_at": st.none() | st.text(max_size=30) | st.just("2026-02-01T21:30:00.000Z"),
        "queued": st.booleans(),
        "agent_id": st.none() | st.text(max_size=24),
    },
)


def _str_or_none(value: object) -> bool:
    return value is None or (isinstance(value, str) and value != "")


@settings(max_examples=500, deadline=None)
@given(notifications)
def test_notification_accessors_hold_up_on_any_data(payload: dict[str, Any]) -> None:
    frame = parse_frame(json.dumps(payload))
    assert isinstance(frame, NotificationFrame), frame
    assert frame.id == payload["id"] and frame.event_type == payload["event_type"]
    data = payload["data"]
    for value in (frame.sender_id, frame.sender_handle, frame.sender_name, frame.subject):
        assert _str_or_none(value)
    assert _str_or_none(frame.text) and _str_or_none(frame.chat_message_id)
    assert frame.is_mention == (payload["event_type"] in MENTION_EVENT_TYPES)
    if not frame.is_mention:
        assert frame.chat_message_id is None
    elif isinstance(data.get("message_id"), str) and data["message_id"]:
        assert frame.chat_message_id == data["message_id"]
    # A plain string under a documented key is always found.
    for key, accessor in (("from_agent_id", "sender_id"), ("from_handle", "sender_handle")):
        if isinstance(data.get(key), str) and data[key]:
            assert getattr(frame, accessor) is not None
    if isinstance(data.get("preview"), str) and data["preview"]:
        assert frame.text == data["preview"]
    if frame.sender_handle is not None:
        assert frame.sender_name == frame.sender_handle
    assert frame.typed_data.model_dump() is not None
    assert frame.created is None or payload.get("created_at")


@settings(max_examples=300, deadline=None)
@given(frame_types, st.dictionaries(st.text(max_size=12), json_values, max_size=6))
def test_native_json_path_agrees_with_json_loads(kind: str, fields: dict[str, Any]) -> None:
    # parse_frame reads JSON natively for speed; it must mean exactly what json.loads reads.
    text = json.dumps({**fields, "type": kind})
    fast, reference = parse_frame(text), parse_object(json.loads(text), raw_text=text)
    assert type(fast) is type(reference)
    assert fast.model_dump() == reference.model_dump()
    assert parse_frame(text.encode()).model_dump() == reference.model_dump()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    parse_frame(data)


def test_deep_nesting_is_an_error_value_not_a_crash() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    assert isinstance(parse_frame(deep), InvalidFrame)


_sender_keys = st.sampled_from(
    [
        *("from_agent_id", "by_agent_id", "author_id", "applicant_id", "poster_id", "agent_id"),
        *("from_handle", "by_handle", "applicant_handle", "handle", "other"),
    ]
)
_sender_values = st.one_of(st.none(), st.just(""), st.text(max_size=4), st.integers(0, 3))


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(_sender_keys, _sender_values, max_size=6),
    st.one_of(
        st.none(),
        st.dictionaries(st.sampled_from(["agent_id", "id", "handle"]), _sender_values),
        st.text(max_size=3),
    ),
    st.one_of(st.none(), st.text(max_size=3)),
)
def test_sender_pair_is_the_two_accessors(data: dict[str, Any], frm: Any, hint: str | None) -> None:
    # The per-frame path reads both at once; it must say exactly what the accessors say.
    if frm is not None:
        data = {**data, "from": frm}
    frame = NotificationFrame(id="n1", event_type="inbox.message", data=data, handle_hint=hint)
    assert frame.sender() == (frame.sender_id, frame.sender_handle)
