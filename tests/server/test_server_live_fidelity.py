"""Live mode does what the live server's own code does (``live-server-notes.md``, checked
against that code running locally): newest-N chat pages, acks that mark nothing read, the
REST list's merge and quirks, every live payload shape, no handles where it sends none, the
profile endpoints that do name the handle, subscriptions that filter nothing, and a close
frame followed by open TCP."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import websockets

from langchain_moltcities.server import LocalServer, ServerState
from langchain_moltcities.server.pytest_plugin import ServerFactory

from .server_helpers import ApiFor, Connector, eventually

# ---------------------------------------------------------------------- chat


async def test_chat_page_is_the_newest_n_after_the_cursor(
    moltcities_live_server: LocalServer, api_for: ApiFor
) -> None:
    api = api_for(moltcities_live_server)
    posted = [(await api.chat("alice", f"m{i}"))["message"] for i in range(6)]
    page = (await api.get("/api/chat", after=posted[0]["created_at"], limit=3)).json()
    # m1 and m2 are after the cursor too, but out of reach: a full page is the only sign.
    assert [m["message"] for m in page["messages"]] == ["m3", "m4", "m5"]
    assert page["count"] == 3 and page["latest"] == posted[5]["created_at"]
    onward = (await api.get("/api/chat", after=page["latest"], limit=3)).json()
    assert onward == {"messages": [], "latest": None, "count": 0}


async def test_chat_frames_and_history_carry_no_handle(
    moltcities_live_server: LocalServer, api_for: ApiFor, connect: Connector
) -> None:
    srv = moltcities_live_server
    ws = await connect(srv, "bob", channel="town-square")
    await ws.recv_type("connected")
    reply = await api_for(srv).chat("alice", "hello")
    frame = await ws.recv_type("chat")
    assert set(frame) == {"type", "id", "agent_id", "agent_name", "message", "created_at"}
    assert (frame["agent_id"], frame["agent_name"]) == (srv.agents["alice"].id, "Alice")
    assert reply["message"]["agent"] == {
        "id": srv.agents["alice"].id,
        "name": "Alice",
        "avatar": "🤖",
        "profile_url": "https://alice.moltcities.org",
    }


async def test_chat_length_counts_after_trimming(
    moltcities_live_server: LocalServer, api_for: ApiFor
) -> None:
    api = api_for(moltcities_live_server)
    padded = "   " + "y" * 500 + "\n\t "
    assert (await api.chat("alice", padded))["message"]["message"] == "y" * 500
    over = await api.post("/api/chat", "alice", {"message": " " + "y" * 501 + " "})
    assert over.status_code == 400
    assert over.json() == {"error": "Message must be 1-500 characters", "received_length": 501}


async def test_chat_rate_limit_has_the_live_shape(
    moltcities_server_factory: ServerFactory, api_for: ApiFor
) -> None:
    srv = moltcities_server_factory(mode="live", chat_rate_limit=(1, 60.0))
    api = api_for(srv)
    await api.chat("alice", "one")
    limited = await api.post("/api/chat", "alice", {"message": "two"})
    assert limited.status_code == 429
    body = limited.json()
    assert set(body) == {"error", "retry_after"}
    assert body["error"] == "Slow down! Wait a few seconds between messages."
    assert 1 <= body["retry_after"] <= 60


async def test_hourly_allowances_have_the_live_shapes(
    moltcities_server_factory: ServerFactory, api_for: ApiFor
) -> None:
    """Only the chat's 429 says when to retry; messages' and guestbook's say nothing of it."""
    srv = moltcities_server_factory(
        mode="live", hourly_limits={"chat": 1, "message": 1, "guestbook": 1}
    )
    api = api_for(srv)
    await api.chat("alice", "one")
    await api.message("alice", "bob", "one")
    await api.post("/api/sites/bob/guestbook", "alice", {"message": "one"})
    chat = await api.post("/api/chat", "alice", {"message": "two"})
    assert (chat.status_code, chat.json()) == (
        429,
        {
            "error": "Rate limit exceeded. Your tier allows 1 messages/hour.",
            "limit": 1,
            "tier": 1,
            "retry_after": 3600,
        },
    )
    dm = await api.post("/api/agents/bob/message", "alice", {"body": "two"})
    assert dm.status_code == 429 and "retry_after" not in dm.json()
    assert dm.json()["error"] == "Too many messages. Try again later."
    gb = await api.post("/api/sites/bob/guestbook", "alice", {"message": "two"})
    assert gb.status_code == 429 and "retry_after" not in gb.json()
    assert gb.json()["limit_per_hour"] == 1
    await api.chat("bob", "others keep their own allowance")


# ---------------------------------------------------------------------- reading


async def test_ack_marks_nothing_read_only_rest_ids_do(
    moltcities_live_server: LocalServer, api_for: ApiFor, connect: Connector
) -> None:
    srv = moltcities_live_server
    api = api_for(srv)
    ws = await connect(srv, "alice")
    await ws.recv_type("connected")
    message_id = await api.message("bob", "alice", "hello")
    await api.post("/api/sites/alice/guestbook", "bob", {"message": "was here"})
    pushed = [await ws.recv_type("notification"), await ws.recv_type("notification")]
    for frame in pushed:
        await ws.send({"type": "ack", "notification_id": frame["id"]})
    assert await ws.until_pong() == []  # no reply to an ack
    unread = (await api.get("/api/notifications", "alice", unread="true")).json()
    assert unread["count"] == 2  # the acks changed nothing
    assert (
        await api.post(f"/api/notifications/{pushed[0]['id']}/read", "alice")
    ).status_code == 400
    by_type = {frame["event_type"]: frame["data"] for frame in pushed}
    rest_ids = [f"msg_{message_id}", f"gb_{by_type['guestbook.entry']['entry_id']}"]
    assert by_type["inbox.message"]["message_id"] == message_id
    for rest_id in rest_ids:
        marked = await api.post(f"/api/notifications/{rest_id}/read", "alice")
        assert marked.json() == {"marked_read": True, "id": rest_id}
    unread = (await api.get("/api/notifications", "alice", unread="true")).json()
    assert unread["count"] == 0
    # gb_/jc_/js_ ids are recorded whatever they name; a msg_ id must name a message.
    assert (await api.post("/api/notifications/gb_nothing/read", "alice")).status_code == 200
    assert (await api.post("/api/notifications/msg_nothing/read", "alice")).status_code == 404
    bulk = await api.post("/api/notifications/read", "alice", {"ids": ["msg_x", "js_y", "z", 5]})
    assert bulk.json() == {
        "results": [
            {"id": "msg_x", "marked_read": False},
            {"id": "js_y", "marked_read": True},
            {"id": "z", "marked_read": False},
        ],
        "marked_count": 1,
        "total": 3,
    }


def _state_at(clock: list[datetime]) -> ServerState:
    return ServerState("live", wallclock=lambda: clock[0])


def test_rest_list_merges_types_by_parsed_time_with_second_resolution_guestbook() -> None:
    t0 = datetime(2026, 11, 30, 12, 0, 0, 500_000, tzinfo=UTC)
    clock = [t0]
    state = _state_at(clock)
    alice, bob = state.register_agent("alice"), state.register_agent("bob")

    def at(seconds: float) -> None:
        clock[0] = t0 + timedelta(seconds=seconds)

    at(0.0)
    state.send_message(bob, "alice", None, "m1")  # 12:00:00.500
    at(0.2)
    state.sign_guestbook(bob, "alice", None, "g1")  # shown as 12:00:00: sorts before m1
    at(2.0)
    state.sign_guestbook(bob, "alice", None, "g2")  # 12:00:02
    at(3.0)
    state.send_message(bob, "alice", None, "m2")  # 12:00:03.500
    page = state.list_notifications(alice, limit=50)
    shown = [n["data"].get("preview") or n["data"].get("message") for n in page["notifications"]]
    assert shown == ["m2", "g2", "m1", "g1"]
    times = [n["created_at"] for n in page["notifications"]]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", times[1])
    assert times[0].endswith("Z") and "T" in times[0]
    # limit cuts the merged list; unread_count counts the page only
    two = state.list_notifications(alice, limit=2)
    assert (two["count"], two["unread_count"], two["has_more"]) == (2, 2, True)


def test_rest_list_quirks_since_as_string_and_read_guestbook_cut_before_filter() -> None:
    clock = [datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)]
    state = _state_at(clock)
    alice, bob = state.register_agent("alice"), state.register_agent("bob")
    state.sign_guestbook(bob, "alice", None, "old")
    clock[0] += timedelta(seconds=5)
    state.sign_guestbook(bob, "alice", None, "new")
    state.send_message(bob, "alice", None, "msg")
    # since compared as text: "2026-11-30 12:00:05" < "2026-11-30T..." so no guestbook item
    # of that day is ever "after" an ISO since of the same day.
    since = state.list_notifications(alice, since="2026-11-30T11:00:00.000Z")
    assert [n["type"] for n in since["notifications"]] == ["message"]
    # unread=true: guestbook items are cut at limit before read ones are filtered out
    newest_gb = next(
        n["id"]
        for n in state.list_notifications(alice)["notifications"]
        if n["type"] == "guestbook"
    )
    state.mark_read(alice, newest_gb)
    unread = state.list_notifications(alice, limit=1, unread=True)
    assert [n["type"] for n in unread["notifications"]] == ["message"]
    assert state.list_notifications(alice, limit=2, unread=True)["count"] == 2


# ---------------------------------------------------------------------- payloads


async def test_every_live_event_names_its_sender(
    moltcities_live_server: LocalServer, api_for: ApiFor, connect: Connector
) -> None:
    srv = moltcities_live_server
    api = api_for(srv)
    alice, bob = await connect(srv, "alice"), await connect(srv, "bob")
    await alice.recv_type("connected")
    await bob.recv_type("connected")
    a, b = srv.agents["alice"], srv.agents["bob"]

    await api.post("/api/agents/alice/message", "bob", {"subject": "s", "body": "hi"})
    inbox = await alice.recv_type("notification")
    assert inbox["event_type"] == "inbox.message"
    assert inbox["data"]["from"] == {
        "agent_id": b.id,
        "handle": "bob",
        "display_name": "Bob",
        "avatar": None,
    }
    assert (await api.post("/api/sites/alice/follow", "bob")).status_code == 201
    followed = await alice.recv_type("notification")
    assert followed["event_type"] == "site.followed"
    assert set(followed["data"]) == {"site_id", "site_slug", "follower_id", "follower_name"}
    assert (followed["data"]["follower_id"], followed["data"]["follower_name"]) == (b.id, "Bob")
    again = await api.post("/api/sites/alice/follow", "bob")
    assert (again.status_code, again.json()) == (200, {"message": "Already following"})

    job = (await api.post("/api/jobs", "alice", {"title": "T", "description": "D"})).json()["job"]
    await api.post(f"/api/jobs/{job['id']}/apply", "bob", {"proposal": "me"})
    interested = await alice.recv_type("notification")
    assert interested["event_type"] == "job.worker_interested"
    assert interested["data"] == {
        "job_id": job["id"],
        "job_title": "T",
        "worker_id": b.id,
        "worker_name": "Bob",
        "active_workers": 1,
    }
    await api.post(f"/api/jobs/{job['id']}/status", "bob", {"status": "submitted"})
    submitted = await alice.recv_type("notification")
    assert submitted["event_type"] == "job.submitted"
    assert set(submitted["data"]) == {
        "job_id",
        "job_title",
        "worker_id",
        "worker_name",
        "review_deadline",
        "model",
    }
    assert (submitted["data"]["worker_id"], submitted["data"]["worker_name"]) == (b.id, "Bob")
    await api.post(f"/api/jobs/{job['id']}/status", "alice", {"status": "completed"})
    approved = await bob.recv_type("notification")
    assert approved["event_type"] == "job.approved"
    assert (approved["data"]["poster_id"], approved["data"]["poster_name"]) == (a.id, "Alice")
    await api.post(f"/api/jobs/{job['id']}/status", "alice", {"status": "paid"})
    paid = await bob.recv_type("notification")
    assert paid["event_type"] == "job.paid"
    assert set(paid["data"]) == {
        "job_id",
        "job_title",
        "reward_lamports",
        "worker_payment_lamports",
        "signature",
    }
    # The worker's REST list holds one js_<job id> item with the latest status.
    jobs = [
        n
        for n in (await api.get("/api/notifications", "bob")).json()["notifications"]
        if n["type"] == "job_status"
    ]
    assert [(n["id"], n["data"]["status"]) for n in jobs] == [(f"js_{job['id']}", "paid")]

    long_text = "@alice " + "z" * 300
    await api.chat("bob", long_text)
    mention = await alice.recv_type("notification")
    assert mention["event_type"] == "mention.chat"
    assert mention["data"]["message_preview"] == long_text[:100]
    posted = await api.post("/api/town-square", "bob", {"message": "legacy @alice"})
    assert posted.status_code == 201 and posted.json()["post"]["id"].startswith("ts_")
    legacy = await alice.recv_type("notification")
    assert legacy["event_type"] == "mention.town_square"
    assert legacy["data"] == {
        "post_id": posted.json()["post"]["id"],
        "author_id": b.id,
        "author_name": "Bob",
        "message_preview": "legacy @alice",
    }
    # every live frame names its recipient, and live ones carry no "queued" key
    for frame in (inbox, followed, interested, submitted, mention, legacy):
        assert frame["agent_id"] == a.id and "queued" not in frame


async def test_subscriptions_are_echoed_and_filter_nothing(
    moltcities_live_server: LocalServer, api_for: ApiFor, connect: Connector
) -> None:
    srv = moltcities_live_server
    ws = await connect(srv, "alice")
    await ws.recv_type("connected")
    await ws.send({"type": "subscribe", "events": ["inbox.message", 7]})
    assert await ws.recv() == {"type": "subscribed", "events": ["inbox.message", 7]}
    await ws.send({"type": "subscribe", "events": "mention"})
    assert await ws.until_pong() == []  # not a list: no reply at all
    await api_for(srv).post("/api/sites/alice/guestbook", "bob", {"message": "unsubscribed"})
    assert (await ws.recv_type("notification"))["event_type"] == "guestbook.entry"


# ---------------------------------------------------------------------- profiles


async def test_me_has_no_handle_my_sites_and_agents_name_it(
    moltcities_live_server: LocalServer, api_for: ApiFor
) -> None:
    srv = moltcities_live_server
    api = api_for(srv)
    alice = srv.agents["alice"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{21}", alice.id)
    me = (await api.get("/api/me", "alice")).json()["agent"]
    assert me["id"] == alice.id and "alice" not in str(me)
    sites = (await api.get("/api/my/sites", "alice")).json()["sites"]
    assert [(s["slug"], s["url"]) for s in sites] == [("alice", "https://alice.moltcities.org")]
    for ref in (alice.id, "ALICE"):  # by id or (case-insensitively) by slug
        profile = (await api.get(f"/api/agents/{ref}")).json()["agent"]
        assert profile["id"] == alice.id
        assert profile["_links"]["site"] == "https://alice.moltcities.org"
        assert "site" not in profile and "handle" not in profile
    assert (await api.get("/api/agents/nobody")).status_code == 404


async def test_profile_routes_exist_in_documented_mode_and_live_extras_do_not(
    moltcities_server: LocalServer, api_for: ApiFor
) -> None:
    """The profile routes are the server's in either dialect (the spec does not list them);
    the live-only extras raise events the documented protocol does not have."""
    srv = moltcities_server
    api = api_for(srv)
    sites = (await api.get("/api/my/sites", "alice")).json()["sites"]
    assert [s["slug"] for s in sites] == ["alice"]
    profile = (await api.get(f"/api/agents/{srv.agents['alice'].id}")).json()["agent"]
    assert profile["_links"]["site"] == "https://alice.moltcities.org"
    assert (await api.post("/api/sites/alice/follow", "bob")).status_code == 404
    assert (await api.post("/api/town-square", "bob", {"message": "x"})).status_code == 404


# ---------------------------------------------------------------------- closing


async def test_close_frame_then_tcp_stays_open_for_the_hold(
    moltcities_server_factory: ServerFactory, connect: Connector
) -> None:
    """4003 and 4000 arrive at once; the TCP connection closes only after ``close_hold``."""
    long_hold = moltcities_server_factory(mode="live", close_hold=60.0)
    old = await connect(long_hold, "alice", close_timeout=60.0)
    await old.recv_type("connected")
    new = await connect(long_hold, "alice", close_timeout=60.0)
    await new.recv_type("connected")
    assert await old.closed() == (4003, "New connection opened")
    # The close frame is in; the client has answered it; the server has not closed TCP.
    assert old.conn.protocol.state is websockets.protocol.State.CLOSING
    long_hold.disconnect_all(4000)
    assert await new.closed() == (4000, "Connection timeout")
    assert new.conn.protocol.state is websockets.protocol.State.CLOSING

    short_hold = moltcities_server_factory(mode="live", close_hold=0.2)
    ws = await connect(short_hold, "alice", close_timeout=60.0)
    await ws.recv_type("connected")
    short_hold.disconnect_all(4000)
    assert await ws.closed() == (4000, "Connection timeout")
    await eventually(lambda: ws.conn.protocol.state is websockets.protocol.State.CLOSED)
    assert ws.conn.protocol.close_rcvd is not None


async def test_displacement_race_when_asked_for(
    moltcities_server_factory: ServerFactory, api_for: ApiFor, connect: Connector
) -> None:
    """After a 4003 the live server loses track of the new connection for a while: pushes
    to it are queued for the next reconnect and Town Square chat passes it by."""
    srv = moltcities_server_factory(mode="live", displacement_race=60.0, close_hold=0.2)
    api = api_for(srv)
    first = await connect(srv, "alice")
    await first.recv_type("connected")
    second = await connect(srv, "alice")
    await second.recv_type("connected")
    assert await first.closed() == (4003, "New connection opened")
    message_id = await api.message("bob", "alice", "lost in the race")
    assert await second.until_pong() == []  # the push did not reach the new connection
    third = await connect(srv, "alice")  # not a displacement: the server lost track of #2
    await third.recv_type("connected")
    queued = await third.recv_type("notification")
    assert (queued["queued"], queued["data"]["message_id"]) == (True, message_id)

    bob = await connect(srv, "bob", channel="town-square")
    await bob.recv_type("connected")
    old_ts = await connect(srv, "alice", channel="town-square")
    await old_ts.recv_type("connected")
    new_ts = await connect(srv, "alice", channel="town-square")
    await new_ts.recv_type("connected")
    assert await old_ts.closed() == (4003, "New connection opened")
    await api.chat("bob", "right after the displacement")
    assert (await bob.recv_type("chat"))["message"] == "right after the displacement"
    assert await new_ts.until_pong() == []  # chat passed the new connection by


async def test_no_displacement_race_by_default(
    moltcities_live_server: LocalServer, api_for: ApiFor, connect: Connector
) -> None:
    srv = moltcities_live_server
    first = await connect(srv, "alice")
    await first.recv_type("connected")
    second = await connect(srv, "alice")
    await second.recv_type("connected")
    await api_for(srv).message("bob", "alice", "straight through")
    assert (await second.recv_type("notification"))["data"]["preview"] == "straight through"
