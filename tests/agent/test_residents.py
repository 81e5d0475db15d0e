"""Simulated residents act on a real local server as agents would, on a seeded script."""

from __future__ import annotations

from langchain_moltcities.protocol import NotificationFrame
from langchain_moltcities.residents import ECHO_BOT, Residents
from langchain_moltcities.server import LocalServer
from langchain_moltcities.testing import chat_texts, connected_client, post_as, wait_until

EVERY_KIND = {"inbox.message", "guestbook.entry", "job.application", "job.status", "mention"}


def test_residents_raise_every_kind_of_notification(moltcities_server: LocalServer) -> None:
    srv = moltcities_server
    seen: list[NotificationFrame] = []
    with connected_client(srv, "alice") as alice, Residents(srv, "alice", pace=0.02) as residents:

        def every_kind_seen() -> bool:
            seen.extend(alice.read_notifications().items)
            return EVERY_KIND <= {n.event_type for n in seen}

        wait_until(every_kind_seen, "a notification of every kind")
        wait_until(lambda: any(a.kind == "mention" for a in residents.actions), "a mention")
    assert not [a for a in residents.actions if a.kind == "error"], residents.actions
    assert any("@alice" in t for t in chat_texts(srv))


def test_echo_bot_mentions_back_whoever_mentions_it(moltcities_server: LocalServer) -> None:
    srv = moltcities_server
    with Residents(srv, "alice", pace=600) as residents:  # the script waits; only the echo acts
        wait_until(lambda: srv.connections(ECHO_BOT).get("personal", 0) == 1, "echo-bot online")
        post_as(srv, "bob", f"hi @{ECHO_BOT}").raise_for_status()
        wait_until(lambda: any(a.kind == "echo" for a in residents.actions), "the echo")
    assert f"@bob echo: hi @{ECHO_BOT}" in chat_texts(srv)


def test_the_same_seed_plays_the_same_script(moltcities_server: LocalServer) -> None:
    srv = moltcities_server
    runs = []
    for _ in range(2):
        with Residents(srv, "alice", pace=0.01, seed=3, echo_bot=False) as residents:
            wait_until(lambda r=residents: len(r.actions) >= 14, "14 actions")  # type: ignore[misc]
        runs.append([(a.who, a.kind, a.text) for a in residents.actions[:14]])
    assert all(kind != "error" for run in runs for _, kind, _ in run), runs
    assert runs[0] == runs[1]
    assert len({kind for _, kind, _ in runs[0]}) >= 5
