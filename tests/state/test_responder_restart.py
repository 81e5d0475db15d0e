"""MentionResponder restarted on the same state: never answers a mention twice, keeps its caps.

The agent is a plain runnable that records each turn (no LLM), so what is counted is what the
responder decided; it never acks, so the documented server redelivers every mention.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from langchain_core.runnables import RunnableLambda

from langchain_moltcities import MoltCitiesClient
from langchain_moltcities.fleet.pytest_plugin import StateAt
from langchain_moltcities.mentions import MentionResponder
from langchain_moltcities.server.runner import LocalServer
from langchain_moltcities.testing import wait_until

from .helpers import fast_settings


def _post(srv: LocalServer, who: str, text: str) -> None:
    httpx.post(
        f"{srv.base_url}/api/chat",
        json={"message": text},
        headers={"Authorization": f"Bearer {srv.agents[who].api_key}"},
        timeout=10,
    ).raise_for_status()


class _Run:
    """One process lifetime: a client and a responder on ``state``."""

    def __init__(self, srv: LocalServer, state: Path | str, **guard: Any) -> None:
        self.prompts: list[str] = []
        self.client = MoltCitiesClient(
            srv.agents["alice"].api_key, srv.base_url, settings=fast_settings(), state=state
        )
        agent: RunnableLambda[Any, dict[str, Any]] = RunnableLambda(self._turn)
        opts: dict[str, Any] = {"cooldown": 0.0, "max_turns": 100, "window": 60.0} | guard
        self.responder = MentionResponder(agent, self.client, context_messages=0, **opts)
        self.responder.start()
        assert self.client.wait_connected(15)
        wait_until(lambda: self.client.handle is not None, "our handle")

    def _turn(self, inputs: Any) -> dict[str, Any]:
        self.prompts.append(str(inputs))
        return {"messages": []}

    def close(self) -> None:
        self.responder.stop()
        self.client.close()


def test_a_mention_answered_before_is_never_answered_again(
    any_moltcities_server: LocalServer, state_at: StateAt
) -> None:
    srv, state = any_moltcities_server, state_at("alice.db")
    run = _Run(srv, state)
    _post(srv, "bob", "@alice first question")
    wait_until(lambda: len(run.prompts) == 1, "the first turn's prompt")
    run.close()
    assert "first question" in run.prompts[0]

    # The mention is neither acked nor read: the documented server redelivers it and the
    # live one's chat comes back in the back-fill. Both must be recognised as answered.
    run = _Run(srv, state)
    try:
        _post(srv, "carol", "@alice second question")
        wait_until(lambda: len(run.prompts) >= 1, "the second turn's prompt")
        time.sleep(0.5)  # a repeat of the first would have come by now
        assert len(run.prompts) == 1
        assert "second question" in run.prompts[0] and "first question" not in run.prompts[0]
    finally:
        run.close()


def test_mentions_raised_while_down_are_answered_once(
    any_moltcities_server: LocalServer, state_at: StateAt
) -> None:
    srv, state = any_moltcities_server, state_at("alice.db")
    _Run(srv, state).close()  # first run: sets the cursor
    _post(srv, "bob", "@alice while you were away")
    run = _Run(srv, state)
    try:
        wait_until(lambda: len(run.prompts) >= 1, "the recovered mention's prompt")
        time.sleep(0.5)
        assert len(run.prompts) == 1 and "while you were away" in run.prompts[0]
    finally:
        run.close()


def test_turn_cap_window_carries_over_a_restart(
    moltcities_server: LocalServer, state_at: StateAt
) -> None:
    srv, state = moltcities_server, state_at("alice.db")
    run = _Run(srv, state, max_turns=1, window=3600.0)
    _post(srv, "bob", "@alice one")
    wait_until(lambda: run.responder.stats.turns == 1, "the first turn")
    run.close()
    run = _Run(srv, state, max_turns=1, window=3600.0)
    try:
        _post(srv, "carol", "@alice two")
        # Over the cap, a mention waits for the window (deferred) instead of a turn now.
        wait_until(lambda: run.responder.stats.deferred == 1, "a deferred mention")
        time.sleep(0.5)
        assert run.responder.stats.turns == 0
    finally:
        run.close()


def test_author_cooldown_carries_over_a_restart(
    moltcities_server: LocalServer, state_at: StateAt
) -> None:
    srv, state = moltcities_server, state_at("alice.db")
    run = _Run(srv, state, cooldown=3600.0)
    _post(srv, "bob", "@alice one")
    wait_until(lambda: run.responder.stats.turns == 1, "the first turn")
    run.close()
    run = _Run(srv, state, cooldown=3600.0)
    try:
        _post(srv, "bob", "@alice again")
        _post(srv, "carol", "@alice hello")
        wait_until(lambda: run.responder.stats.turns == 1, "carol's turn")
        wait_until(lambda: len(run.prompts) == 1, "carol's prompt")
        wait_until(lambda: run.responder.stats.skipped.get("cooldown") == 1, "bob cooling")
        assert "hello" in run.prompts[0] and "again" not in run.prompts[0]
    finally:
        run.close()


def test_a_responder_keeps_its_own_state_file(
    moltcities_server: LocalServer, state_at: StateAt
) -> None:
    """``MentionResponder(state=...)`` beside a client with no state of its own."""
    srv = moltcities_server
    state = state_at("responder.db")

    def run() -> tuple[MoltCitiesClient, MentionResponder, list[str]]:
        prompts: list[str] = []

        def turn(inputs: Any) -> dict[str, Any]:
            prompts.append(str(inputs))
            return {"messages": []}

        client = MoltCitiesClient(
            srv.agents["alice"].api_key, srv.base_url, settings=fast_settings()
        )
        agent: RunnableLambda[Any, dict[str, Any]] = RunnableLambda(turn)
        responder = MentionResponder(
            agent, client, cooldown=0.0, context_messages=0, state=state
        ).start()
        assert client.wait_connected(15)
        return client, responder, prompts

    client, responder, prompts = run()
    _post(srv, "bob", "@alice first")
    wait_until(lambda: responder.stats.turns == 1, "the first turn")
    responder.stop()
    client.close()
    # The documented server redelivers the unacked mention; the responder's file knows it.
    client, responder, prompts = run()
    try:
        _post(srv, "carol", "@alice second")
        wait_until(lambda: len(prompts) >= 1, "the second turn's prompt")
        time.sleep(0.5)
        assert len(prompts) == 1 and "second" in prompts[0] and "first" not in prompts[0]
    finally:
        responder.stop()
        client.close()
