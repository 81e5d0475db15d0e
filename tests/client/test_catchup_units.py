"""The pure parts of the live-fidelity work: gap rule, ack book, handle directory, recovered
mentions, subscriptions and what each event says happened. No sockets: these are rules."""

from __future__ import annotations

from typing import Any

import pytest

from langchain_moltcities.acks import AckBook, rest_aliases
from langchain_moltcities.catchup import ChatGap, detect_gap, oldest_first
from langchain_moltcities.directory import (
    HandleDirectory,
    handle_from_agent_body,
    handle_from_sites_body,
    handle_from_url,
)
from langchain_moltcities.event_text import action_of
from langchain_moltcities.protocol import (
    ChatFrame,
    NotificationFrame,
    PresenceAgent,
    PresenceFrame,
    RestChatMessage,
    RestNotification,
)
from langchain_moltcities.recovered import chat_key, mention_from_chat, mentions_handle
from langchain_moltcities.render import notification_line
from langchain_moltcities.subscriptions import SubscriptionState, expand_event_types


def rest_chat(i: int) -> RestChatMessage:
    return RestChatMessage(id=f"c{i}", message=f"m{i}", created_at=f"2026-02-01T10:00:{i:02d}Z")


def note(event_type: str, data: dict[str, Any], **kw: Any) -> NotificationFrame:
    return NotificationFrame(id=kw.pop("id", "notif_1"), event_type=event_type, data=data, **kw)


# ---------------------------------------------------------------------- chat gaps


def test_a_full_page_from_a_cursor_is_a_possible_gap_naming_its_span() -> None:
    page = [rest_chat(i) for i in range(3, 8)]
    gap = detect_gap("2026-02-01T10:00:00Z", page, limit=5)
    assert gap == ChatGap(after="2026-02-01T10:00:00Z", until="2026-02-01T10:00:03Z", page_size=5)
    text = gap.describe()
    assert "10:00:00" in text and "10:00:03" in text and "newest 5" in text


def test_a_short_page_or_a_first_read_is_no_gap() -> None:
    assert detect_gap("2026-02-01T10:00:00Z", [rest_chat(1)], limit=5) is None
    assert detect_gap(None, [rest_chat(i) for i in range(5)], limit=5) is None


def test_rest_notifications_are_put_in_time_order_whatever_their_time_form() -> None:
    items = [
        RestNotification(id="msg_b", type="message", created_at="2026-02-01T10:00:05.000Z"),
        RestNotification(id="msg_a", type="message", created_at="2026-02-01T10:00:01.000Z"),
        RestNotification(id="gb_c", type="guestbook", created_at="2026-02-01 10:00:03"),
        RestNotification(id="js_d", type="job_status", created_at=None),
    ]
    assert [n.id for n in oldest_first(items)] == ["js_d", "msg_a", "gb_c", "msg_b"]


# ---------------------------------------------------------------------- acks


def test_rest_ids_are_the_payload_ids_prefixed_even_when_already_prefixed() -> None:
    inbox = note("inbox.message", {"message_id": "msg_abc"}, agent_id="me")
    guestbook = note("guestbook.entry", {"entry_id": "e1"}, agent_id="me")
    assert rest_aliases(inbox) == ["msg_msg_abc"]
    assert rest_aliases(guestbook) == ["gb_e1"]
    assert rest_aliases(note("job.paid", {"job_id": "j"}, agent_id="me")) == []
    assert rest_aliases(note("inbox.message", {"message_id": 7})) == []  # not an id


def test_the_ack_book_maps_live_ids_to_rest_and_leaves_documented_ones_to_the_socket() -> None:
    book = AckBook(capacity=10)
    live = note("inbox.message", {"message_id": "m1"}, id="notif_live", agent_id="me")
    job = note("job.approved", {"job_id": "j1"}, id="notif_job", agent_id="me")
    book.note(live, rest_aliases(live))
    book.note(job, [])
    assert book.rest_ids_for(["notif_live", "notif_job", "notif_documented", "gb_9"]) == [
        "msg_m1",
        "gb_9",
    ]
    assert book.rest_id_of("notif_live") == "msg_m1"
    assert book.rest_id_of("notif_job") is None  # REST can't mark a live job push
    assert book.rest_id_of("notif_documented") == "notif_documented"
    book.acked(["notif_live"])
    assert book.is_acked(["msg_m1"]) and book.is_acked(["notif_live"])
    assert not book.is_acked(["notif_job"])
    book.read_pending(["msg_m1"])
    assert book.snapshot() == {"acked": ["notif_live", "msg_m1"], "unsent_reads": ["msg_m1"]}
    book.read_done("msg_m1")
    assert not book.unsent_reads


def test_the_ack_book_is_bounded() -> None:
    book = AckBook(capacity=3)
    book.acked([f"n{i}" for i in range(10)])
    assert not book.is_acked(["n0"]) and book.is_acked(["n9"])
    assert len(book.snapshot()["acked"]) == 3


# ---------------------------------------------------------------------- directory


def test_handles_come_from_urls_profiles_and_sites() -> None:
    assert handle_from_url("https://ada.moltcities.org") == "ada"
    assert handle_from_url("https://ada.moltcities.org/about") == "ada"
    assert handle_from_url("https://moltcities") is None
    assert handle_from_url(None) is None
    assert handle_from_url("https://bad slug.moltcities.org") is None
    live = {"agent": {"id": "a1", "name": "Ada", "_links": {"site": "https://ada.moltcities.org"}}}
    assert handle_from_agent_body(live) == "ada"
    assert handle_from_agent_body({"agent": {"id": "a1", "handle": "ada"}}) == "ada"
    assert handle_from_agent_body({"agent": {"id": "a1", "_links": {"site": None}}}) is None
    assert handle_from_agent_body(["not", "a", "profile"]) is None
    assert handle_from_sites_body({"sites": [{"slug": "ada", "title": "A"}]}) == "ada"
    assert handle_from_sites_body({"sites": []}) is None
    assert handle_from_sites_body({"sites": [{"url": "https://ada.moltcities.org"}]}) == "ada"


def test_the_directory_learns_from_every_frame_that_names_a_handle() -> None:
    d = HandleDirectory(capacity=10)
    d.learn_from(PresenceFrame(event="joined", agent=PresenceAgent(id="p1", handle="pia")))
    d.learn_from(ChatFrame(id="c1", agent_id="c1a", agent_handle="cam", message="hi"))
    d.learn_from(note("inbox.message", {"from": {"agent_id": "i1", "handle": "ivy"}}))
    d.learn_from(note("mention", {"by_agent_id": "m1", "by_handle": "max"}))
    d.learn_from(note("mention.chat", {"author_id": "x1", "author_name": "No Handle"}))
    assert (d.get("p1"), d.get("c1a"), d.get("i1"), d.get("m1")) == ("pia", "cam", "ivy", "max")
    assert d.get("x1") is None and d.should_look_up("x1")
    d.missed("x1")
    assert not d.should_look_up("x1")  # one request per unknown id, not one per frame
    assert d.snapshot() == {"p1": "pia", "c1a": "cam", "i1": "ivy", "m1": "max"}


def test_the_directory_is_bounded_and_refuses_what_is_not_a_slug() -> None:
    d = HandleDirectory(capacity=2)
    assert not d.learn("a", "has space") and not d.learn("a", "x" * 65) and not d.learn("", "ok")
    for i in range(5):
        d.learn(f"id{i}", f"h{i}")
    assert len(d) == 2 and d.get("id0") is None and d.get("id4") == "h4"
    restored = HandleDirectory()
    restored.restore(d.snapshot())
    assert restored.get("id4") == "h4"


# ---------------------------------------------------------------------- recovered mentions


@pytest.mark.parametrize(
    ("text", "mentioned"),
    [
        ("hi @alice", True),
        ("hi @ALICE!", True),
        ("@alice-bot is someone else", False),
        ("mail alice@example.com", False),  # the server's rule sees '@example' here
        ("email@alice", True),  # ...and '@alice' here
        ("no mention", False),
    ],
)
def test_the_mention_rule_is_the_servers(text: str, mentioned: bool) -> None:
    assert mentions_handle(text, "alice") is mentioned


def test_a_chat_message_mentioning_us_becomes_a_recovered_mention() -> None:
    chat = ChatFrame(
        id="chat_1",
        agent_id="bob_id",
        agent_name="Bob",
        agent_handle="bob",
        message="@Alice look",
        created_at="2026-02-01T10:00:00Z",
    )
    m = mention_from_chat(chat, own_handle="alice", own_id="alice_id")
    assert m is not None and m.recovered and m.id == chat_key("chat_1")
    assert m.is_mention and m.chat_message_id == "chat_1"
    assert (m.sender_id, m.sender_handle, m.text) == ("bob_id", "bob", "@Alice look")
    assert "(recovered from Town Square chat)" in notification_line(m, "10:00")
    documented = mention_from_chat(chat, own_handle="alice", own_id=None, event_type="mention")
    assert documented is not None and documented.event_type == "mention"


def test_no_mention_from_our_own_message_or_before_we_know_who_we_are() -> None:
    own = ChatFrame(id="c", agent_id="alice_id", message="@alice note to self")
    assert mention_from_chat(own, own_handle="alice", own_id="alice_id") is None
    by_handle = ChatFrame(id="c", agent_handle="Alice", message="@alice note to self")
    assert mention_from_chat(by_handle, own_handle="alice", own_id=None) is None
    other = ChatFrame(id="c", agent_id="bob", message="@alice hi")
    assert mention_from_chat(other, own_handle=None, own_id="alice_id") is None


# ---------------------------------------------------------------------- subscriptions


def test_mention_means_every_mention_type() -> None:
    assert expand_event_types(["mention"]) == ["mention", "mention.chat", "mention.town_square"]
    assert expand_event_types(["mention.chat", "inbox.message"]) == [
        "mention",
        "mention.chat",
        "mention.town_square",
        "inbox.message",
    ]


def test_the_client_filters_and_notices_a_server_that_does_not() -> None:
    st = SubscriptionState()
    assert st.admits("guestbook.entry")  # nothing asked: everything passes
    st.want(["mention"])
    assert not st.confirmed
    assert st.admits("mention.chat") and st.admits("mention")
    assert not st.admits("guestbook.entry") and st.server_filters is None  # no echo yet
    st.echo(["mention"])
    assert st.confirmed
    assert not st.admits("inbox.message")
    assert st.server_filters is False and st.filtered_out == 2


# ---------------------------------------------------------------------- what happened


@pytest.mark.parametrize(
    ("event_type", "data", "words"),
    [
        (
            "site.followed",
            {"follower_id": "b", "follower_name": "Bob", "site_slug": "a"},
            "followed",
        ),
        ("job.worker_interested", {"worker_id": "b", "worker_name": "Bob"}, "interested"),
        ("job.submitted", {"worker_id": "b", "worker_name": "Bob"}, "submitted work"),
        (
            "job.approved",
            {"poster_id": "b", "poster_name": "Bob", "reward_lamports": 5 * 10**8},
            "0.5 SOL",
        ),
        ("job.paid", {"reward_lamports": 10**9, "worker_payment_lamports": 99 * 10**7}, "paid"),
        ("x.future", {}, "event x.future"),
    ],
)
def test_every_live_event_says_what_happened(
    event_type: str, data: dict[str, Any], words: str
) -> None:
    frame = note(event_type, {"job_title": "Logo", **data}, agent_id="me")
    assert words in action_of(frame)
    line = notification_line(frame, "10:00")
    assert "someone" not in line or event_type == "x.future"
    if "worker_name" in data or "poster_name" in data or "follower_name" in data:
        assert frame.sender_id == "b" and "Bob" in line
