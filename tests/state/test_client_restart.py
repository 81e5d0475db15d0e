"""A client restarted on the same state file, against the local server in both dialects.

Restarts here are clean (close, then a new client); the kill -9 restarts run in
tests/reliability/test_restart_chaos.py.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from langchain_moltcities import MoltCitiesClient
from langchain_moltcities.fleet.pytest_plugin import StateAt
from langchain_moltcities.protocol import ChatFrame, NotificationFrame
from langchain_moltcities.server.runner import LocalServer
from langchain_moltcities.state import MemoryStore, StateSpec
from langchain_moltcities.testing import wait_until
from langchain_moltcities.tools import CheckNotificationsTool

from .helpers import fast_settings, post


def _client(srv: LocalServer, state: StateSpec, transport: str = "websocket") -> MoltCitiesClient:
    c = MoltCitiesClient(
        srv.agents["alice"].api_key,
        srv.base_url,
        settings=fast_settings(),
        state=state,
        transport=transport,
    )
    c.start()
    assert c.wait_connected(15)
    return c


def _collect(read: Callable[[], list[object]], want: int, timeout: float = 15.0) -> list[object]:
    got: list[object] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        got += read()
        time.sleep(0.02)
    return got


def _chat(c: MoltCitiesClient) -> list[object]:
    return [i.message for i in c.read_town_square(kinds="chat").items if isinstance(i, ChatFrame)]


def test_chat_missed_while_down_is_backfilled_once(
    any_moltcities_server: LocalServer, state_at: StateAt
) -> None:
    srv, state = any_moltcities_server, state_at("alice.db")
    c = _client(srv, state)
    post(srv, "bob", "before")
    assert _collect(lambda: _chat(c), 1) == ["before"]
    c.close()
    for i in range(3):
        post(srv, "bob", f"while down {i}")
    c = _client(srv, state)
    try:
        got = _collect(lambda: _chat(c), 3)
        # The back-fill is read before live frames: a message posted now arrives after any
        # repeat, so reading up to it sees every repeat there is (a sleep would miss a late one).
        post(srv, "bob", "marker, posted last")
        got += _collect(lambda: _chat(c), 1)
        assert got == ["while down 0", "while down 1", "while down 2", "marker, posted last"]
    finally:
        c.close()


def test_chat_received_but_never_read_comes_back(
    any_moltcities_server: LocalServer, state_at: StateAt
) -> None:
    """The stored cursor sits before the oldest unread message, so a restart loses none."""
    srv, state = any_moltcities_server, state_at("alice.db")
    c = _client(srv, state)
    post(srv, "bob", "read")
    assert _collect(lambda: _chat(c), 1) == ["read"]
    post(srv, "bob", "unread 1")
    post(srv, "bob", "unread 2")
    wait_until(lambda: c.status().channels["town-square"].pending == 2, "two unread")
    c.close()
    c = _client(srv, state)
    try:
        assert _collect(lambda: _chat(c), 2) == ["unread 1", "unread 2"]
    finally:
        c.close()


def _notes(c: MoltCitiesClient) -> list[object]:
    return [n for n in c.read_notifications().items]


def test_acked_never_again_and_shown_unacked_flagged(
    moltcities_server: LocalServer, state_at: StateAt
) -> None:
    """Documented server: it redelivers what was not acked when the agent comes back."""
    srv, state = moltcities_server, state_at("alice.db")
    c = _client(srv, state)
    srv.notify("alice", "inbox.message", {"message_id": "m1", "preview": "handled"})
    srv.notify("alice", "inbox.message", {"message_id": "m2", "preview": "seen, not handled"})
    first = _collect(lambda: _notes(c), 2)
    assert len(first) == 2
    handled, pending = first
    assert isinstance(handled, NotificationFrame) and isinstance(pending, NotificationFrame)
    c.ack([handled.id])
    c.close()
    srv.notify("alice", "inbox.message", {"message_id": "m3", "preview": "new"})
    c = _client(srv, state)
    try:
        tool = CheckNotificationsTool(client=c)
        wait_until(lambda: c.status().channels["personal"].pending >= 2, "the redelivery")
        text, artifact = tool._render(None, 20)
        records = {r["id"]: r for r in artifact["notifications"]}
        assert handled.id not in records
        assert records[pending.id]["redelivery"] is True
        assert [r["redelivery"] for r in records.values() if r["id"] != pending.id] == [False]
        assert "Re-delivered (shown to you before a restart, never acknowledged" in text
        assert pending.id in text.split("Re-delivered")[1]
    finally:
        c.close()


def test_acked_items_never_come_back_over_rest_either(
    any_moltcities_server: LocalServer, state_at: StateAt
) -> None:
    """A polling restart lists unread items over REST: what was acked must not be among them."""
    srv, state = any_moltcities_server, state_at("alice.db")
    c = _client(srv, state)
    srv.notify("alice", "inbox.message", {"message_id": "m1", "preview": "one"})
    srv.notify("alice", "guestbook.entry", {"entry_id": "e1", "preview": "two"})
    got = _collect(lambda: _notes(c), 2)
    c.ack([n.id for n in got if isinstance(n, NotificationFrame)])
    c.close()
    srv.notify("alice", "inbox.message", {"message_id": "m2", "preview": "fresh"})
    c = _client(srv, state, transport="poll")
    try:
        again = _collect(lambda: _notes(c), 1)
        # A later poll lists every unread item at once: the one that brings this marker would
        # bring an acked item too (a sleep would pass if the repeat came late).
        srv.notify("alice", "inbox.message", {"message_id": "m3", "preview": "marker"})
        again += _collect(lambda: _notes(c), 1)
        texts = [n.text for n in again if isinstance(n, NotificationFrame)]
        assert texts == ["fresh", "marker"]
    finally:
        c.close()


def test_acks_queued_at_exit_are_sent_on_the_next_start(
    moltcities_server: LocalServer, state_at: StateAt
) -> None:
    srv, state = moltcities_server, state_at("alice.db")
    c = _client(srv, state)
    srv.notify("alice", "inbox.message", {"message_id": "m1", "preview": "one"})
    (note,) = _collect(lambda: _notes(c), 1)
    assert isinstance(note, NotificationFrame)
    srv.refuse_handshakes(503)
    srv.drop_all()
    wait_until(lambda: not c.status().channels["personal"].state == "connected", "down")
    c.ack([note.id])
    assert c.status().channels["personal"].pending_acks == 1
    c.close()
    alice = srv.agents["alice"].id

    def acked_on_server() -> bool:
        return bool(srv._call(lambda: [n.acked for n in srv.state.notifications[alice]])[0])

    assert not acked_on_server()
    srv.refuse_handshakes(None)
    c = _client(srv, state)
    try:
        wait_until(acked_on_server, "the stored ack to reach the server")
        wait_until(
            lambda: not (c.agent_state and c.agent_state.members("pending_ack")),
            "the stored ack to be confirmed",
        )
    finally:
        c.close()


def test_subscriptions_are_restored(moltcities_server: LocalServer, state_at: StateAt) -> None:
    srv, state = moltcities_server, state_at("alice.db")
    c = _client(srv, state)
    c.set_subscriptions(["inbox.message"])
    c.close()
    c = _client(srv, state)
    try:
        assert c.subscriptions == ["inbox.message"]
        alice = srv.agents["alice"].id
        wait_until(
            lambda: (
                srv._call(
                    lambda: [
                        s.subscriptions
                        for s in srv.state.sessions.values()
                        if s.agent.id == alice and s.channel == "personal"
                    ]
                )
                == [("inbox.message",)]
            ),
            what="the server to hold the stored subscription",
        )
    finally:
        c.close()


class _Process:
    """``notified_agent`` in a child process: commands on stdin, answers on stdout."""

    def __init__(self, srv: LocalServer, state: Path | str) -> None:
        env = {**os.environ, "MOLTCITIES_API_KEY": srv.agents["alice"].api_key}
        cmd = [sys.executable, "-m", "tests.state.notified_agent", "--state", str(state)]
        self.proc = subprocess.Popen(
            [*cmd, "--base-url", srv.base_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=Path(__file__).resolve().parents[2],
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.expect("ready", timeout=60)

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.put(raw.decode().strip())
        self.lines.put("<eof>")

    def expect(self, word: str, timeout: float = 30.0) -> list[str]:
        """Lines up to the first that starts with ``word`` (generous deadline)."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            if line == "<eof>":
                raise AssertionError(f"the agent process ended; it said {seen}")
            seen.append(line)
            if line.startswith(word):
                return seen

    def run(self, command: str) -> list[str]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()
        return self.expect("done")

    def kill_9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)


def test_live_job_and_follow_notifications_survive_kill_9(
    moltcities_live_server: LocalServer, state_at: StateAt
) -> None:
    """The live server forgets a push as it sends it, and its REST list has no job or follow
    items: only the state file can present them after a crash. Acked ones never return,
    shown ones return flagged, never-shown ones return unflagged, nothing twice."""
    srv, state = moltcities_live_server, state_at("alice.db")
    agent = _Process(srv, state)
    try:
        events = [
            ("job.worker_interested", {"job_id": "j1", "job_title": "t", "worker_id": "w"}),
            ("site.followed", {"site_id": "s", "site_slug": "alice", "follower_id": "bob"}),
            ("job.submitted", {"job_id": "j2", "job_title": "t", "worker_id": "w"}),
            ("site.followed", {"site_id": "s", "site_slug": "alice", "follower_id": "carol"}),
        ]
        for kind, data in events:
            srv.notify("alice", kind, data)
        for _ in events:
            agent.expect("recv")
        shown = [ln.split() for ln in agent.run("read 2") if ln.startswith("shown")]
        assert [s[2] for s in shown] == ["job.worker_interested", "site.followed"]
        acked, seen_only = shown[0][1], shown[1][1]
        agent.run(f"ack {acked}")
        agent.run("stored 3")  # the two never read are committed too, not only the read one
        agent.kill_9()
    finally:
        if agent.proc.poll() is None:
            agent.kill_9()
    # The live server pushes onto a socket it still thinks open and forgets the push: notify
    # only once it has seen the killed process's sockets close (under load that takes a while).
    wait_until(lambda: not any(srv.connections("alice").values()), "the killed agent's sockets")
    srv.notify("alice", "job.approved", {"job_id": "j3", "job_title": "t"})  # while down

    c = _client(srv, state)
    try:
        tool = CheckNotificationsTool(client=c)
        wait_until(lambda: c.status().channels["personal"].pending >= 4, "four unread")
        text, artifact = tool._render(None, 20)
        records = [(r["event_type"], r["redelivery"]) for r in artifact["notifications"]]
        assert records == [
            ("site.followed", True),  # shown before the kill, never acked
            ("job.submitted", False),  # delivered, never shown
            ("site.followed", False),
            ("job.approved", False),  # the server's queue, sent on connect
        ]
        ids = [r["id"] for r in artifact["notifications"]]
        assert acked not in ids and seen_only in text.split("Re-delivered")[1]
        time.sleep(0.3)  # a duplicate (the server's or the store's) would show up by now
        assert c.read_notifications().items == []
        c.ack(ids)
    finally:
        c.close()
    c = _client(srv, state)
    try:
        assert c.agent_state is not None and c.agent_state.members("unread") == {}
        assert c.read_notifications().items == []
    finally:
        c.close()


def test_a_shared_memory_store_carries_unacked_notifications_to_the_next_client(
    moltcities_live_server: LocalServer,
) -> None:
    """The in-memory store follows the same rules within one process (close, start anew)."""
    srv, store = moltcities_live_server, MemoryStore()
    c = _client(srv, store)
    srv.notify("alice", "site.followed", {"site_slug": "alice", "follower_id": "bob"})
    srv.notify("alice", "job.paid", {"job_id": "j1", "job_title": "t"})
    (first,) = _collect(lambda: list(c.read_notifications(limit=1).items), 1)
    assert isinstance(first, NotificationFrame) and first.event_type == "site.followed"
    wait_until(lambda: c.status().channels["personal"].pending == 1, "the second to arrive")
    c.close()
    c = _client(srv, store)
    try:
        got = c.read_notifications()
        assert [(n.event_type, n.id in got.redelivered) for n in got.items] == [
            ("site.followed", True),
            ("job.paid", False),
        ]
    finally:
        c.close()
