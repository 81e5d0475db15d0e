"""Catch-up, recovered mentions and handles over real sockets, in both dialects.

Beside tests/client/test_live_fidelity.py (one test per failure the issue names): what the
client does about them in each dialect, and what a responder's prompt gets.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from langchain_core.runnables import RunnableLambda

from conftest import fast_settings
from langchain_moltcities import MoltCitiesClient, MoltCitiesToolkit
from langchain_moltcities.mentions import MentionResponder
from langchain_moltcities.protocol import ChatFrame, NotificationFrame
from langchain_moltcities.server import LocalServer
from langchain_moltcities.testing import WAIT, post_as, wait_until


@contextmanager
def client_of(srv: LocalServer, handle: str = "alice", **kw: Any) -> Iterator[MoltCitiesClient]:
    kw.setdefault("settings", fast_settings())
    client = MoltCitiesClient(api_key=srv.agents[handle].api_key, base_url=srv.base_url, **kw)
    with client:
        assert client.wait_connected(timeout=WAIT), client.status().model_dump()
        yield client


def chat_read(client: MoltCitiesClient, into: list[str]) -> None:
    into.extend(
        c.text for c in client.read_town_square(kinds="chat").items if isinstance(c, ChatFrame)
    )


def message_from_bob(srv: LocalServer, client: MoltCitiesClient, body: str) -> NotificationFrame:
    """Bob writes to alice; the one notification alice's client reads."""
    r = httpx.post(
        f"{srv.base_url}/api/agents/alice/message",
        json={"subject": "s", "body": body},
        headers={"Authorization": f"Bearer {srv.agents['bob'].api_key}"},
        timeout=WAIT,
    )
    r.raise_for_status()
    wait_until(lambda: client.status().channels["personal"].pending >= 1, "the message")
    [item] = client.read_notifications().items
    return item


def test_chat_is_polled_during_an_outage_so_no_gap_opens(
    any_moltcities_server: LocalServer,
) -> None:
    # Five per page, twelve posted while the socket is refused: polled as they come, nothing
    # is ever more than a page behind, so no gap (the live server's back-fill alone would
    # have one).
    srv = any_moltcities_server
    settings = fast_settings(backfill_limit=5, poll_interval=0.05)
    with client_of(srv, channels=("town-square",), settings=settings) as client:
        srv.refuse_handshakes(503)
        srv.drop_all()
        wait_until(lambda: not client.status().connected, "the drop")
        seen: list[str] = []
        for batch in range(4):
            for i in range(3):
                post_as(srv, "bob", f"away {batch}.{i}").raise_for_status()

            def batch_seen(b: int = batch) -> bool:
                chat_read(client, seen)
                return f"away {b}.2" in seen

            wait_until(batch_seen, f"batch {batch} polled while the socket is refused")
        ts = client.status().channels["town-square"]
        assert ts.connect_count == 1 and ts.state != "connected"  # all of it over REST
        srv.refuse_handshakes(None)
        wait_until(lambda: client.status().connected, "the reconnect")
        chat_read(client, seen)
        assert seen == [f"away {b}.{i}" for b in range(4) for i in range(3)]
        assert client.status().channels["town-square"].chat_gaps == 0
        assert client.chat_gaps() == []


def test_back_fill_pages_forward_on_a_server_that_pages_oldest_first(
    moltcities_server: LocalServer,
) -> None:
    # The documented local server cuts pages from the oldest: nothing is lost, no gap is said.
    srv = moltcities_server
    with client_of(srv, channels=("town-square",), settings=fast_settings(backfill_limit=5)) as c:
        srv.stop()  # neither socket nor REST: the back-fill after the restart does it all
        bob = srv.state.agent_by_handle("bob")
        assert bob is not None
        for i in range(12):
            srv.state.post_chat(bob, f"while away {i}")
        srv.start()
        seen: list[str] = []

        def all_twelve() -> bool:
            chat_read(c, seen)
            return len(seen) >= 12

        wait_until(all_twelve, "the whole back-fill")
        assert seen == [f"while away {i}" for i in range(12)]
        assert c.status().channels["town-square"].chat_gaps == 0


def test_a_gap_is_said_once_by_the_tool_and_kept_in_status(
    moltcities_live_server: LocalServer,
) -> None:
    srv = moltcities_live_server
    with client_of(srv, channels=("town-square",), settings=fast_settings(backfill_limit=5)) as c:
        srv.stop()
        bob = srv.state.agent_by_handle("bob")
        assert bob is not None
        for i in range(12):
            srv.state.post_chat(bob, f"while away {i}")
        srv.start()
        wait_until(lambda: c.status().channels["town-square"].chat_gaps == 1, "the gap")
        [gap] = c.chat_gaps()
        assert gap.page_size == 5 and gap.until is not None
        tool = {t.name: t for t in MoltCitiesToolkit(client=c).get_tools()}["read_town_square"]
        first = tool.invoke({"name": tool.name, "args": {}, "id": "1", "type": "tool_call"})
        assert str(first.content).count("Possible gap") == 1
        assert first.artifact["gaps"] == [gap.as_dict()]
        # The newest five came; the older seven are the gap.
        assert "while away 11" in str(first.content) and "while away 6" not in str(first.content)
        again = tool.invoke({"name": tool.name, "args": {}, "id": "2", "type": "tool_call"})
        assert "Possible gap" not in str(again.content) and again.artifact["gaps"] == []
        assert c.status().channels["town-square"].chat_gaps == 1


def test_a_mention_is_heard_from_chat_when_the_server_push_cannot_arrive(
    any_moltcities_server: LocalServer,
) -> None:
    # No personal channel, so the server's mention push has nowhere to go: the chat has it.
    srv = any_moltcities_server
    heard: list[NotificationFrame] = []
    with client_of(srv, channels=("town-square",), on_mention=heard.append) as client:
        wait_until(lambda: client.handle == "alice", "our handle")
        post_as(srv, "bob", "@alice, one for you").raise_for_status()
        post_as(srv, "alice", "@alice talking to myself").raise_for_status()
        post_as(srv, "bob", "@carol and one for carol").raise_for_status()
        wait_until(lambda: heard, "the recovered mention")
        seen: list[str] = []

        def all_three() -> bool:
            chat_read(client, seen)
            return len(seen) >= 3

        wait_until(all_three, "the three chat lines")
        assert len(heard) == 1
        [m] = heard
        assert m.recovered and m.text == "@alice, one for you"
        # The chat names the author by display name only: the handle was looked up
        # (GET /api/agents/{id}) before the listener ran.
        assert m.sender_handle == "bob" and m.sender_name == "bob"
        assert m.event_type == ("mention" if srv.mode == "documented" else "mention.chat")
        assert client.status().mentions_recovered == 1
        got = client.read_notifications(event_types=["mention"]).items
        assert [n.id for n in got] == [m.id]
        client.ack(m.id)  # exists only in this client: acking it asks the server nothing


def test_polling_says_loudly_that_it_cannot_hear_mentions(
    moltcities_live_server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    srv = moltcities_live_server
    with caplog.at_level(logging.WARNING, logger="langchain_moltcities.client"):
        with client_of(srv, channels=("personal",), transport="poll") as client:
            warning = client.status().mention_warning
            assert warning is not None and "NO mentions" in warning
            tool = {t.name: t for t in MoltCitiesToolkit(client=client).get_tools()}
            out = tool["check_notifications"].invoke(
                {"name": "check_notifications", "args": {}, "id": "1", "type": "tool_call"}
            )
            assert "Warning: polling over REST" in str(out.content)
        with client_of(srv, transport="poll") as both:
            wait_until(lambda: both.handle == "alice", "our handle")
            warning = both.status().mention_warning
            assert warning is not None and "recovered from Town Square chat" in warning
    assert sum("hears NO mentions" in r.getMessage() for r in caplog.records) == 1


def test_a_websocket_client_has_no_mention_warning(any_moltcities_server: LocalServer) -> None:
    with client_of(any_moltcities_server) as client:
        assert client.status().mention_warning is None


def test_the_responders_prompt_names_the_author_by_handle(
    moltcities_live_server: LocalServer,
) -> None:
    # Live mention pushes carry a display name only; the reply needs the handle.
    srv = moltcities_live_server
    prompts: list[str] = []

    def agent(inputs: dict[str, Any]) -> dict[str, Any]:
        prompts.append(str(inputs["messages"][0][1]))
        return {"messages": []}

    with client_of(srv) as client:
        responder = MentionResponder(RunnableLambda(agent), client, context_messages=0)
        with responder:
            post_as(srv, "carol", "@alice what do you think?").raise_for_status()
            wait_until(lambda: prompts, "a turn")
        [mention] = [e for e in responder.events if e.kind == "mention"]
        assert mention.author == "carol"
        assert "@carol" in prompts[0]


def test_an_ack_after_the_socket_died_still_marks_read_over_rest(
    moltcities_live_server: LocalServer,
) -> None:
    # Live: the socket ack marks nothing; the REST read does, whatever the link's state.
    srv = moltcities_live_server
    with client_of(srv, channels=("personal",)) as client:
        item = message_from_bob(srv, client, "read me")
        srv.refuse_handshakes(503)
        srv.drop_all()
        wait_until(lambda: not client.status().connected, "the drop")
        client.ack(item.id)
        assert client.status().unsent_reads == 0
        srv.refuse_handshakes(None)
        wait_until(lambda: client.status().connected, "the reconnect")
        assert client.list_notifications(unread=True).notifications == []


def test_a_failed_mark_read_is_retried_without_another_ack(
    moltcities_live_server: LocalServer,
) -> None:
    # The agent acks its last item while the whole server is down: the REST read fails and
    # no later ack will carry it, so the client must retry it on its own when REST is back.
    srv = moltcities_live_server
    with client_of(srv, channels=("personal",)) as client:
        item = message_from_bob(srv, client, "read me later")
        srv.stop()
        client.ack(item.id)
        assert client.status().unsent_reads == 1
        srv.start()
        wait_until(lambda: client.status().unsent_reads == 0, "the mark-read retried")
        assert client.list_notifications(unread=True).notifications == []
