"""REST endpoints: chat, history, notifications, me, messages, guestbook, jobs, errors."""

from __future__ import annotations

import re

import pytest

from langchain_moltcities.server import LocalServer
from langchain_moltcities.server.pytest_plugin import ServerFactory

from .server_helpers import ApiFor, Connector


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/chat", {"message": "x"}),
        ("/api/agents/alice/message", {"body": "x"}),
        ("/api/sites/alice/guestbook", {"message": "x"}),
        ("/api/jobs", {"title": "t", "description": "d"}),
        ("/api/notifications/read", {"ids": ["notif_x"]}),
    ],
)
async def test_rest_needs_a_valid_bearer_key(
    any_moltcities_server: LocalServer, api_for: ApiFor, path: str, body: dict[str, object]
) -> None:
    api = api_for(any_moltcities_server)
    missing = await api.client.post(path, json=body)
    assert missing.status_code == 401
    assert missing.json()["error"] == "Missing authentication"
    assert "Bearer" in missing.json()["hint"]
    bad = await api.client.post(path, json=body, headers={"Authorization": "Bearer mc_bad"})
    assert (bad.status_code, bad.json()["error"]) == (401, "Invalid API key")
    me = await api.client.get("/api/me", headers={"Authorization": "Bearer mc_bad"})
    assert me.status_code == 401


async def test_me(any_moltcities_server: LocalServer, api_for: ApiFor) -> None:
    srv = any_moltcities_server
    body = (await api_for(srv).get("/api/me", "carol")).json()
    agent = body["agent"]
    assert (agent["id"], agent["name"]) == (srv.agents["carol"].id, "Carol")
    if srv.mode == "documented":
        assert agent["handle"] == "carol"
    else:  # the live /api/me names no handle or slug anywhere
        assert "handle" not in agent and "slug" not in agent
        assert "carol" not in str(body)


async def test_bad_json_is_400(any_moltcities_server: LocalServer, api_for: ApiFor) -> None:
    api = api_for(any_moltcities_server)
    response = await api.client.post(
        "/api/chat",
        content=b"{nope",
        headers=api.auth("alice") | {"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_JSON"


@pytest.mark.parametrize(
    ("message", "hint", "live_error"),
    [
        ("", "empty", "message is required"),
        ("   ", "empty", "Message must be 1-500 characters"),
        ("x" * 501, "too long", "Message must be 1-500 characters"),
        (None, "required", "message is required"),
    ],
)
async def test_chat_length_limits(
    any_moltcities_server: LocalServer,
    api_for: ApiFor,
    message: str | None,
    hint: str,
    live_error: str,
) -> None:
    srv = any_moltcities_server
    response = await api_for(srv).post("/api/chat", "alice", {"message": message})
    assert response.status_code == 400
    if srv.mode == "documented":
        assert hint in response.json()["error"]
    else:  # the live server's own words, and the trimmed length it counted
        assert response.json()["error"] == live_error
        if live_error.startswith("Message must"):
            assert response.json()["received_length"] == len(str(message).strip())


async def test_chat_500_chars_is_fine(any_moltcities_server: LocalServer, api_for: ApiFor) -> None:
    reply = await api_for(any_moltcities_server).chat("alice", "y" * 500)
    assert len(reply["message"]["message"]) == 500


async def test_chat_burst_limit_is_429_with_retry_after(
    moltcities_server_factory: ServerFactory, api_for: ApiFor
) -> None:
    srv = moltcities_server_factory(chat_rate_limit=(2, 60.0))
    api = api_for(srv)
    await api.chat("alice", "one")
    await api.chat("alice", "two")
    limited = await api.post("/api/chat", "alice", {"message": "three"})
    assert limited.status_code == 429
    assert 1 <= limited.json()["retry_after"] <= 60
    await api.chat("bob", "others are not limited")
    history = (await api.get("/api/chat")).json()
    assert "three" not in [m["message"] for m in history["messages"]]


async def test_chat_history_order_after_and_limit(
    any_moltcities_server: LocalServer, api_for: ApiFor
) -> None:
    api = api_for(any_moltcities_server)
    posted = [(await api.chat("alice", f"m{i}"))["message"] for i in range(5)]
    everything = (await api.get("/api/chat")).json()  # public: no key
    assert [m["message"] for m in everything["messages"]] == [f"m{i}" for i in range(5)]
    assert everything["count"] == 5
    assert everything["latest"] == posted[-1]["created_at"]
    after = (await api.get("/api/chat", after=posted[1]["created_at"], limit=2)).json()
    if any_moltcities_server.mode == "documented":
        assert everything["messages"][0]["agent"]["handle"] == "alice"
        # exclusive, the oldest page first
        assert [m["message"] for m in after["messages"]] == ["m2", "m3"]
    else:
        agent = everything["messages"][0]["agent"]
        assert "handle" not in agent
        assert agent["profile_url"] == "https://alice.moltcities.org"
        # exclusive, the NEWEST page after the cursor (m2 cannot be fetched), oldest first
        assert [m["message"] for m in after["messages"]] == ["m3", "m4"]
    latest = (await api.get("/api/chat", limit=2)).json()
    assert [m["message"] for m in latest["messages"]] == ["m3", "m4"]


@pytest.mark.parametrize(
    "params", [{"limit": 201}, {"limit": 0}, {"limit": "x"}, {"after": "soon"}]
)
async def test_chat_history_bad_params_are_400(
    moltcities_server: LocalServer, api_for: ApiFor, params: dict[str, object]
) -> None:
    response = await api_for(moltcities_server).get("/api/chat", None, **params)
    assert response.status_code == 400
    assert response.json()["error"]


async def test_live_chat_history_params_as_the_live_server_reads_them(
    moltcities_live_server: LocalServer, api_for: ApiFor
) -> None:
    """parseInt and a cap of 200, no check of ``after`` (compared as a string)."""
    api = api_for(moltcities_live_server)
    for i in range(3):
        await api.chat("alice", f"m{i}")
    capped = (await api.get("/api/chat", limit=201)).json()
    assert capped["count"] == 3
    assert (await api.get("/api/chat", limit=0)).json()["count"] == 0
    assert (await api.get("/api/chat", limit="2x")).json()["count"] == 2
    assert (await api.get("/api/chat", after="soon")).json()["count"] == 0  # "soon" > "2026-..."
    bad = await api.get("/api/chat", limit="x")
    assert bad.status_code == 400 and "limit" in bad.json()["error"]


async def test_mentions_raise_notifications_not_for_self(
    any_moltcities_server: LocalServer, connect: Connector, api_for: ApiFor
) -> None:
    srv = any_moltcities_server
    alice = await connect(srv, "alice")
    bob = await connect(srv, "bob")
    await alice.recv_type("connected")
    await bob.recv_type("connected")
    chat = await api_for(srv).chat("bob", "hey @ALICE and @alice, @bob and @nobody")
    frames = await alice.until_pong()
    assert len(frames) == 1  # once per agent, case-insensitive
    frame = frames[0]
    data = frame["data"]
    if srv.mode == "documented":
        assert frame["event_type"] == "mention"
        assert data["by_agent_id"] == srv.agents["bob"].id
        assert data["by_handle"] == "bob"
        assert data["message_id"] == chat["message"]["id"]
        assert "@ALICE" in data["snippet"]
    else:
        assert frame["event_type"] == "mention.chat"
        assert data == {
            "message_id": chat["message"]["id"],
            "author_id": srv.agents["bob"].id,
            "author_name": "Bob",
            "message_preview": "hey @ALICE and @alice, @bob and @nobody",
        }
    assert await bob.until_pong() == []  # no self-mention


async def test_direct_message(
    any_moltcities_server: LocalServer, connect: Connector, api_for: ApiFor
) -> None:
    srv = any_moltcities_server
    ws = await connect(srv, "alice")
    await ws.recv_type("connected")
    api = api_for(srv)
    reply = await api.post("/api/agents/alice/message", "bob", {"subject": "S", "body": "B"})
    assert reply.status_code == 201
    assert reply.json()["success"] is True
    frame = await ws.recv_type("notification")
    assert frame["event_type"] == "inbox.message"
    data = frame["data"]
    assert (data["message_id"], data["subject"], data["preview"]) == (reply.json()["id"], "S", "B")
    bob = srv.agents["bob"]
    if srv.mode == "documented":
        assert (data["from_agent_id"], data["from_handle"]) == (bob.id, "bob")
    else:
        assert data["from"] == {
            "agent_id": bob.id,
            "handle": "bob",
            "display_name": "Bob",
            "avatar": None,
        }
    missing = await api.post("/api/agents/nobody/message", "bob", {"body": "B"})
    assert (missing.status_code, missing.json()["error"]) == (404, "Agent not found")
    empty = await api.post("/api/agents/alice/message", "bob", {"subject": "S"})
    assert empty.status_code == 400
    assert "body" in empty.json()["error"]


async def test_guestbook_entry(
    any_moltcities_server: LocalServer, connect: Connector, api_for: ApiFor
) -> None:
    srv = any_moltcities_server
    ws = await connect(srv, "alice")
    await ws.recv_type("connected")
    api = api_for(srv)
    reply = await api.post(
        "/api/sites/alice/guestbook", "bob", {"author_name": "B.", "message": "nice site"}
    )
    assert (reply.status_code, reply.json()) == (201, {"message": "Signed."})
    frame = await ws.recv_type("notification")
    assert frame["event_type"] == "guestbook.entry"
    data = frame["data"]
    assert data["message"] == "nice site"
    if srv.mode == "documented":
        assert (data["from_agent_id"], data["from_handle"]) == (srv.agents["bob"].id, "bob")
    else:
        assert data["site_slug"] == "alice"
        assert (data["author"], data["author_agent_id"]) == ("B.", srv.agents["bob"].id)
    assert (await api.post("/api/sites/zed/guestbook", "bob", {"message": "x"})).status_code == 404
    assert (await api.post("/api/sites/alice/guestbook", "bob", {})).status_code == 400


async def test_jobs_raise_application_and_status(
    any_moltcities_server: LocalServer, connect: Connector, api_for: ApiFor
) -> None:
    srv = any_moltcities_server
    api = api_for(srv)
    alice = await connect(srv, "alice")
    bob = await connect(srv, "bob")
    await alice.recv_type("connected")
    await bob.recv_type("connected")
    created = await api.post("/api/jobs", "alice", {"title": "Bot", "description": "Build it"})
    assert created.status_code == 201
    job = created.json()["job"]
    applied = await api.post(f"/api/jobs/{job['id']}/apply", "bob", {"proposal": "2 hours"})
    assert applied.status_code == 201
    application = await alice.recv_type("notification")
    status = await api.post(f"/api/jobs/{job['id']}/status", "alice", {"status": "completed"})
    assert status.json()["job"]["status"] == "completed"
    change = await bob.recv_type("notification")
    bob_id = srv.agents["bob"].id
    if srv.mode == "documented":
        assert application["event_type"] == "job.application"
        assert application["data"] == {
            "job_id": job["id"],
            "job_title": "Bot",
            "applicant_id": bob_id,
            "applicant_handle": "bob",
            "proposal": "2 hours",
        }
        assert change["event_type"] == "job.status"
        assert (change["data"]["old_status"], change["data"]["new_status"]) == (
            "open",
            "completed",
        )
        assert change["data"]["by_agent_id"] == srv.agents["alice"].id
    else:
        assert application["event_type"] == "job.worker_interested"
        assert application["data"] == {
            "job_id": job["id"],
            "job_title": "Bot",
            "worker_id": bob_id,
            "worker_name": "Bob",
            "active_workers": 1,
        }
        assert change["event_type"] == "job.approved"
        assert change["data"] == {
            "job_id": job["id"],
            "job_title": "Bot",
            "poster_id": srv.agents["alice"].id,
            "poster_name": "Alice",
            "reward_lamports": 0,
        }
    assert await alice.until_pong() == []  # the one who changed it is not told
    bad = await api.post(f"/api/jobs/{job['id']}/status", "alice", {"status": "done-ish"})
    assert bad.status_code == 400
    outsider = await api.post(f"/api/jobs/{job['id']}/status", "carol", {"status": "paid"})
    assert outsider.status_code == 403
    missing = await api.post("/api/jobs/job_nope/apply", "bob", {"proposal": "x"})
    assert missing.status_code == 404
    own = await api.post(f"/api/jobs/{job['id']}/apply", "alice", {"proposal": "x"})
    assert own.status_code == 400


async def test_documented_notifications_list_and_read(
    moltcities_server: LocalServer, api_for: ApiFor
) -> None:
    srv = moltcities_server
    api = api_for(srv)
    await api.message("bob", "alice", "first")
    await api.chat("bob", "@alice look")
    page = (await api.get("/api/notifications", "alice")).json()
    assert [n["event_type"] for n in page["notifications"]] == ["mention", "inbox.message"]
    assert (page["unread_count"], page["count"], page["has_more"]) == (2, 2, False)
    assert all(n["id"].startswith("notif_") and n["read"] is False for n in page["notifications"])
    newest = page["notifications"][0]["id"]
    assert (await api.post(f"/api/notifications/{newest}/read", "alice")).status_code == 200
    unread = (await api.get("/api/notifications", "alice", unread="true")).json()
    assert [n["event_type"] for n in unread["notifications"]] == ["inbox.message"]
    bulk = await api.post(
        "/api/notifications/read", "alice", {"ids": [unread["notifications"][0]["id"], "notif_zz"]}
    )
    assert bulk.json()["marked_count"] == 1
    assert bulk.json()["results"][1] == {"id": "notif_zz", "marked_read": False}
    assert (await api.get("/api/notifications", "alice")).json()["unread_count"] == 0
    limited = (await api.get("/api/notifications", "alice", limit=1)).json()
    assert (limited["count"], limited["has_more"]) == (1, True)
    assert (await api.post("/api/notifications/msg_x/read", "alice")).status_code == 400
    assert (await api.post("/api/notifications/notif_x/read", "alice")).status_code == 404
    assert (await api.post("/api/notifications/read", "alice", {"ids": "x"})).status_code == 400
    # someone else's notification is not found for you
    assert (await api.post(f"/api/notifications/{newest}/read", "bob")).status_code == 404


async def test_live_notifications_list_shapes(
    moltcities_live_server: LocalServer, api_for: ApiFor
) -> None:
    srv = moltcities_live_server
    api = api_for(srv)
    message_id = await api.message("bob", "alice", "hello")
    await api.post("/api/sites/alice/guestbook", "bob", {"message": "gb"})
    await api.chat("bob", "@alice mentions never show here")
    page = (await api.get("/api/notifications", "alice")).json()
    by_type = {n["type"]: n for n in page["notifications"]}
    assert sorted(by_type) == ["guestbook", "message"]  # (order: see test_live_rest_order)
    guestbook, message = by_type["guestbook"], by_type["message"]
    assert guestbook["id"].startswith("gb_")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", guestbook["created_at"])
    assert message["id"] == f"msg_{message_id}"
    assert message["data"]["from"] == {"id": srv.agents["bob"].id, "name": "Bob", "avatar": None}
    wrong_form = await api.post("/api/notifications/notif_abc/read", "alice")
    assert (wrong_form.status_code, wrong_form.json()["error"]) == (
        400,
        "Invalid notification ID format",
    )
    missing = await api.post("/api/notifications/msg_does_not_exist/read", "alice")
    assert (missing.status_code, missing.json()["error"]) == (404, "Notification not found")
    marked = await api.post(f"/api/notifications/{message['id']}/read", "alice")
    assert marked.json() == {"marked_read": True, "id": message["id"]}
    assert (await api.get("/api/notifications", "alice")).json()["unread_count"] == 1
