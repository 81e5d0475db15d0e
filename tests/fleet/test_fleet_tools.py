"""The MoltCities tools in every worker of a fleet (FleetClient), on both server dialects.

Real worker processes, a real Redis-compatible server, the local MoltCities server; the holder
killed with SIGKILL. The books: every notification shown to one worker's agent and acked on the
server (one shown again only after the worker that had it died, and then flagged), and every
Town Square message read by every worker.
"""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
import redis
from langchain_core.tools import BaseTool

from langchain_moltcities import MoltCitiesToolkit
from langchain_moltcities.fleet import FleetClient
from langchain_moltcities.fleet.embedded import EmbeddedRedis
from langchain_moltcities.server.pytest_plugin import ServerFactory
from langchain_moltcities.server.runner import LocalServer
from langchain_moltcities.testing import SETTINGS, post_as, wait_until

from .procs import ROOT, WorkerProcess, notification_names, server_books


class ToolsWorker(WorkerProcess):
    """A tools_worker process; its lines gathered by a thread as they come."""

    def __init__(self, srv: LocalServer, redis_url: str, name: str) -> None:
        identity = srv.agents["alice"].id
        args = (srv.base_url, redis_url, identity, name)
        super().__init__(srv, "tests.fleet.tools_worker", *args, name=name)


def _chat_ids(srv: LocalServer) -> set[str]:
    return set(srv._call(lambda: [m.id for m in srv.state.chat]))


@pytest.mark.parametrize("mode", ["documented", "live"])
def test_tools_in_three_workers_holder_killed(
    mode: str, moltcities_server_factory: ServerFactory, redis_url: str
) -> None:
    srv = moltcities_server_factory(mode=mode)
    workers = [ToolsWorker(srv, redis_url, f"w{i}") for i in range(3)]
    books = server_books(srv)
    try:
        wait_until(lambda: sum(w.holding for w in workers) == 1, "one holder", timeout=60)
        first = next(w for w in workers if w.holding)
        for i in range(12):
            srv.notify("alice", "inbox.message", {"message_id": f"a{i}", "preview": f"#{i}"})
        for i in range(3):
            post_as(srv, "bob", f"before the kill {i}").raise_for_status()
        wait_until(lambda: sum(len(w.said("acked")) for w in workers) >= 4, "traffic", 60)
        first.proc.kill()  # SIGKILL: no release, no goodbye
        first.proc.wait(timeout=30)
        survivors = [w for w in workers if w is not first]
        for i in range(12):
            srv.notify("alice", "inbox.message", {"message_id": f"b{i}", "preview": f"#{i}"})
        for i in range(3):
            post_as(srv, "carol", f"after the kill {i}").raise_for_status()
        wait_until(lambda: any(w.holding for w in survivors), "a new holder", timeout=60)
        wait_until(
            lambda: len(books()) == 24 and all(done for _, done in books()),
            "every notification acked on the server",
            timeout=90,
        )
        assert sum(w.holding for w in survivors) == 1
        shown = [(w, row) for w in workers for row in w.said("shown")]
        # Each reached a worker's tool: under its socket id, or (live: pushed onto the killed
        # holder's socket, never again) under its REST id, from the new holder's catch-up.
        names = notification_names(srv)
        assert all(ns & {row[0] for _, row in shown} for ns in names), names
        assert len({row[0] for _, row in shown}) == 24  # no item under two names
        # Exactly one worker's agent each, except what the killed worker was shown and had
        # not acked yet: a survivor claimed it after the visibility timeout, flagged.
        counts = Counter(row[0] for _, row in shown)
        died_with = {r[0] for r in first.said("shown")} - {r[0] for r in first.said("acked")}
        for nid, n in counts.items():
            assert n == 1 or nid in died_with, (nid, n)
        for nid in died_with:
            again = [row for w, row in shown if w is not first and row[0] == nid]
            assert again and again[0][1] == "1", (nid, again)
        for w in survivors:  # what a survivor was shown it acked
            assert {r[0] for r in w.said("shown")} == {r[0] for r in w.said("acked")}
        # Chat is broadcast: every survivor's agent read every message.
        posted = _chat_ids(srv)
        assert len(posted) == 6
        for w in survivors:
            wait_until(
                lambda w=w: posted <= {r[0] for r in w.said("chat")},  # type: ignore[misc]
                "every survivor to read all the chat",
                timeout=30,
            )
            assert len(w.said("chat")) == len({r[0] for r in w.said("chat")})  # none twice
        assert all(w.proc.poll() is None for w in survivors)
    finally:
        for w in workers:
            w.stop()


@pytest.fixture
def holder(moltcities_server: LocalServer, redis_url: str) -> Iterator[FleetClient]:
    """A FleetClient holding alice's sockets in this process."""
    srv = moltcities_server
    client = FleetClient(
        srv.agents["alice"].api_key, srv.base_url, redis_url=redis_url,
        identity=srv.agents["alice"].id, name="holder", lease_ttl=1.0, settings=SETTINGS,
    )  # fmt: skip
    client.start()
    wait_until(lambda: client.holding, "the holder to hold", 30)
    wait_until(
        lambda: client.status().channels["personal"].state == "connected",
        "its sockets to connect",
        30,
    )
    yield client
    client.close()


def _worker_tools(
    srv: LocalServer, redis_url: str, **kw: object
) -> tuple[FleetClient, dict[str, BaseTool]]:
    client = FleetClient(
        srv.agents["alice"].api_key, srv.base_url, redis_url=redis_url,
        identity=srv.agents["alice"].id, name="worker", hold=False, settings=SETTINGS,
        **kw,  # type: ignore[arg-type]
    )  # fmt: skip
    tools = MoltCitiesToolkit(client=client, first_read_wait=0).get_tools()
    return client, {t.name: t for t in tools}


def _call(tool: BaseTool, **args: object) -> tuple[str, dict[str, object]]:
    msg = tool.invoke({"name": tool.name, "args": args, "id": "c", "type": "tool_call"})
    return str(msg.content), msg.artifact


def test_a_worker_that_does_not_hold_posts_filters_and_subscribes(
    moltcities_server: LocalServer, redis_url: str, holder: FleetClient
) -> None:
    srv = moltcities_server
    client, tools = _worker_tools(srv, redis_url)
    try:
        text, _ = _call(tools["post_chat"], message="hello from a worker without a socket")
        assert "Posted to the Town Square" in text
        assert "hello from a worker without a socket" in [
            m.message for m in srv._call(lambda: list(srv.state.chat))
        ]
        assert not client.holding
        text, _ = _call(tools["set_subscriptions"], events=["mention", "inbox.message"])
        assert "confirmed by the server" in text, text
        srv.notify("alice", "inbox.message", {"message_id": "m1", "preview": "a message"})
        post_as(srv, "bob", "@alice are you there?").raise_for_status()

        def of_type(kind: str) -> list[str]:
            _, art = _call(tools["check_notifications"], event_types=[kind])
            return [str(n["event_type"]) for n in art["notifications"]]  # type: ignore[attr-defined]

        got: list[str] = []

        def collect(into: list[str], kind: str) -> bool:
            into.extend(of_type(kind))
            return bool(into)

        wait_until(lambda: collect(got, "mention"), "the mention", 30)
        assert got and all("mention" in t for t in got), got
        # The message read alongside was handed back, not lost: the next read has it.
        rest: list[str] = []
        wait_until(lambda: collect(rest, "inbox.message"), "the message", 30)
        assert rest == ["inbox.message"]
        text, _ = _call(tools["read_town_square"])
        assert "are you there?" in text and "untrusted-" in text
        # Ids it never saw are refused with a way out; known ones are acked.
        text = tools["ack_notification"].invoke({"notification_id": ["notif_nope"]})
        assert "Unknown notification id" in text and "check_notifications" in text, text
    finally:
        client.close()


def test_redis_down_is_a_clear_tool_error(
    moltcities_server: LocalServer, redis_factory: Callable[..., EmbeddedRedis]
) -> None:
    server = redis_factory()
    client, tools = _worker_tools(moltcities_server, server.url)
    try:
        client.start()
        server.stop()
        text = tools["check_notifications"].invoke({})
        assert "did not answer" in text and "try again" in text, text
        assert "redis://127.0.0.1" in text
    finally:
        client.close()


def test_the_readme_fleet_tools_example(
    moltcities_server: LocalServer,
    redis_url: str,
    holder: FleetClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The README's example runs as written in a worker that does not hold (the fixture's
    client does), and its acks reach the server."""
    import re

    srv = moltcities_server
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"<!-- tested: fleet-tools -->\n```python\n(.*?)```", readme, re.S)
    assert found, "no README example marked fleet-tools"
    monkeypatch.setenv("MOLTCITIES_API_KEY", srv.agents["alice"].api_key)
    monkeypatch.setenv("MOLTCITIES_BASE_URL", srv.base_url)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("MOLTCITIES_AGENT_ID", srv.agents["alice"].id)
    for i in range(2):
        srv.notify("alice", "inbox.message", {"message_id": f"r{i}", "preview": f"readme {i}"})
    post_as(srv, "bob", "a chat message for every worker").raise_for_status()
    with redis.Redis.from_url(redis_url, decode_responses=True) as r:
        key = "moltcities:{" + srv.agents["alice"].id + "}:notifications"
        wait_until(lambda: r.xlen(key) == 2, "the holder to append both", 30)
    printed: list[str] = []
    namespace = {"__name__": "readme", "print": lambda *a: printed.append(" ".join(map(str, a)))}
    exec(compile(found.group(1), "README.md", "exec"), namespace)
    out = "\n".join(printed)
    assert "readme 0" in out and "readme 1" in out and "untrusted-" in out, out
    assert "Acknowledged 2 notification(s)" in out, out
    assert "a chat message for every worker" in out, out
    assert "Posted to the Town Square" in out, out
    books = server_books(srv)
    wait_until(lambda: all(done for _, done in books()), "both acked on the server", 30)


def test_a_chat_gap_the_new_holder_found_reaches_every_worker(
    moltcities_server_factory: ServerFactory, redis_url: str
) -> None:
    """Live dialect: more chat than one back-fill page while nobody held. The new holder's
    back-fill reports the gap; a worker's read_town_square says so."""
    from langchain_moltcities import ClientSettings

    srv = moltcities_server_factory(mode="live")
    settings = ClientSettings(
        backfill_limit=3, backoff_base=0.02, backoff_cap=0.2, close_timeout=0.2
    )

    def fleet_client(name: str, hold: bool) -> FleetClient:
        return FleetClient(
            srv.agents["alice"].api_key, srv.base_url, redis_url=redis_url,
            identity=srv.agents["alice"].id, name=name, hold=hold, lease_ttl=1.0,
            settings=settings,
        )  # fmt: skip

    worker = fleet_client("reader", hold=False)
    tool = MoltCitiesToolkit(client=worker, first_read_wait=0).get_tools()[1]
    assert tool.name == "read_town_square"
    try:
        with fleet_client("first", hold=True) as first:
            wait_until(lambda: first.status().connected, "the first holder", 30)
            post_as(srv, "bob", "before the outage").raise_for_status()
            wait_until(lambda: "before the outage" in tool.invoke({}), "the first message", 30)
        for i in range(8):  # nobody holds: more than one back-fill page (3)
            post_as(srv, "bob", f"during the outage {i}").raise_for_status()
        with fleet_client("second", hold=True) as second:
            wait_until(lambda: second.status().connected, "the second holder", 30)
            seen: list[str] = []

            def read() -> bool:
                seen.append(tool.invoke({}))
                return "during the outage 7" in "\n".join(seen)

            wait_until(read, "the newest messages", 30)
            text = "\n".join(seen)
            assert "Possible gap" in text and "newest 3" in text, text
            assert "during the outage 0" not in text  # the page the server never returns
    finally:
        worker.close()


@pytest.mark.parametrize("fate", ["killed", "resumed"])
@pytest.mark.parametrize("mode", ["documented", "live"])
def test_a_frozen_holder_loses_nothing(
    mode: str, fate: str, moltcities_server_factory: ServerFactory, redis_url: str
) -> None:
    """The holder stalls (SIGSTOP: a GC pause, a stalled VM) with its socket open: the server
    keeps pushing onto it (live: at most once, gone), its lease runs out, the other worker takes
    over. Then the frozen one is killed, or wakes up (SIGCONT) with those pushes in its socket.
    Either way every notification reaches one agent and is acked on the server; any item shown
    twice was first shown to the frozen worker, and is flagged the second time. (Tried by hand
    against the live server's own code first: the new holder's REST sweep brought back a
    message pushed onto the frozen socket.)"""
    srv = moltcities_server_factory(mode=mode)
    workers = [ToolsWorker(srv, redis_url, f"w{i}") for i in range(2)]
    books = server_books(srv)
    try:
        wait_until(lambda: sum(w.holding for w in workers) == 1, "one holder", timeout=60)
        frozen = next(w for w in workers if w.holding)
        other = next(w for w in workers if w is not frozen)
        for i in range(3):
            srv.notify("alice", "inbox.message", {"message_id": f"a{i}", "preview": f"#{i}"})
        wait_until(lambda: len(books()) == 3 and all(d for _, d in books()), "traffic", 60)
        frozen.proc.send_signal(signal.SIGSTOP)
        for i in range(4):  # onto the frozen holder's open socket
            srv.notify("alice", "inbox.message", {"message_id": f"b{i}", "preview": f"#{i}"})
        wait_until(lambda: other.holding, "the other worker to take over", timeout=60)
        for i in range(4):
            srv.notify("alice", "inbox.message", {"message_id": f"c{i}", "preview": f"#{i}"})
        if fate == "killed":
            frozen.proc.kill()
            frozen.proc.wait(timeout=30)
        else:
            frozen.proc.send_signal(signal.SIGCONT)
        try:
            wait_until(
                lambda: len(books()) == 11 and all(done for _, done in books()),
                "every notification acked on the server",
                timeout=90,
            )
            alive = [w for w in workers if w.proc.poll() is None]
            wait_until(lambda: sum(w.holding for w in alive) == 1, "one holder again", 60)
        except AssertionError as exc:  # say what each side saw
            said = {w.name: w.lines for w in workers}
            raise AssertionError(f"{exc}; server {books()}; workers {said}") from None
        shown = [(w, row) for w in workers for row in w.said("shown")]
        names = notification_names(srv)
        assert all(ns & {row[0] for _, row in shown} for ns in names), names
        assert len({row[0] for _, row in shown}) == 11  # no item under two names
        for nid, n in Counter(row[0] for _, row in shown).items():
            if n == 1:
                continue
            rows = [(w, row[1]) for w, row in shown if row[0] == nid]
            fresh = [w for w, flag in rows if flag == "0"]
            assert fresh == [frozen], (nid, [(w.name, f) for w, f in rows])
            assert sum(flag == "1" and w is not frozen for w, flag in rows) == n - 1, nid
    finally:
        for w in workers:
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGCONT)
            w.stop()
