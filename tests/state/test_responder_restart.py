"""MentionResponder restarted on the same state: never answers a mention twice, keeps its caps.

The agent is a plain runnable that records each turn (no LLM), so what is counted is what the
responder decided; it never acks, so the documented server redelivers every mention.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableLambda

from langchain_moltcities import MoltCitiesClient
from langchain_moltcities.fleet.pytest_plugin import StateAt
from langchain_moltcities.mentions import MentionResponder
from langchain_moltcities.server.runner import LocalServer
from langchain_moltcities.testing import wait_until

from .helpers import fast_settings, post


def _then_a_marker(srv: LocalServer, prompts: list[str], who: str = "bob") -> None:
    """Post a later mention and wait for its prompt: a repeat would have been answered first.

    A repeat comes from the redelivery at connect (documented server), the chat back-fill (live
    server, read before live frames) or the state's recovery (before the responder's first
    turn), so the client hands it to the responder before this later mention and its turn
    cannot start after the marker's. Unlike a sleep, this cannot pass because a repeat is late.
    """
    before = len(prompts)
    post(srv, who, "@alice marker, posted last")
    wait_until(lambda: len(prompts) > before, "the marker's prompt")
    assert "marker, posted last" in prompts[-1]


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
    post(srv, "bob", "@alice first question")
    wait_until(lambda: len(run.prompts) == 1, "the first turn's prompt")
    run.close()
    assert "first question" in run.prompts[0]

    # The mention is neither acked nor read: the documented server redelivers it and the
    # live one's chat comes back in the back-fill. Both must be recognised as answered.
    run = _Run(srv, state)
    try:
        post(srv, "carol", "@alice second question")
        wait_until(lambda: len(run.prompts) >= 1, "the second turn's prompt")
        _then_a_marker(srv, run.prompts)
        assert len(run.prompts) == 2, run.prompts
        assert "second question" in run.prompts[0]
        assert not any("first question" in p for p in run.prompts)
    finally:
        run.close()


def test_mentions_raised_while_down_are_answered_once(
    any_moltcities_server: LocalServer, state_at: StateAt
) -> None:
    srv, state = any_moltcities_server, state_at("alice.db")
    _Run(srv, state).close()  # first run: sets the cursor
    post(srv, "bob", "@alice while you were away")
    run = _Run(srv, state)
    try:
        wait_until(lambda: len(run.prompts) >= 1, "the recovered mention's prompt")
        _then_a_marker(srv, run.prompts, who="carol")
        assert len(run.prompts) == 2, run.prompts
        assert "while you were away" in run.prompts[0]
        assert "while you were away" not in run.prompts[1]
    finally:
        run.close()


def test_turn_cap_window_carries_over_a_restart(
    moltcities_server: LocalServer, state_at: StateAt
) -> None:
    srv, state = moltcities_server, state_at("alice.db")
    run = _Run(srv, state, max_turns=1, window=3600.0)
    post(srv, "bob", "@alice one")
    wait_until(lambda: run.responder.stats.turns == 1, "the first turn")
    run.close()
    run = _Run(srv, state, max_turns=1, window=3600.0)
    try:
        post(srv, "carol", "@alice two")
        # Over the cap, a mention waits for the window (deferred) instead of a turn now.
        # Were the cap not restored, the mention would be queued, not deferred, and this
        # wait would fail; after close() (the responder's thread joined) no turn can be late.
        wait_until(lambda: run.responder.stats.deferred == 1, "a deferred mention")
    finally:
        run.close()
    assert run.responder.stats.turns == 0 and run.prompts == []
    # The deferred mention was kept, not dropped: with room under the cap it is answered once.
    run = _Run(srv, state, max_turns=3, window=3600.0)
    try:
        wait_until(lambda: len(run.prompts) >= 1, "the deferred mention's prompt")
        _then_a_marker(srv, run.prompts)
        assert len(run.prompts) == 2 and "@alice two" in run.prompts[0], run.prompts
        assert not any("@alice one" in p for p in run.prompts)
    finally:
        run.close()


def test_author_cooldown_carries_over_a_restart(
    moltcities_server: LocalServer, state_at: StateAt
) -> None:
    srv, state = moltcities_server, state_at("alice.db")
    run = _Run(srv, state, cooldown=3600.0)
    post(srv, "bob", "@alice one")
    wait_until(lambda: run.responder.stats.turns == 1, "the first turn")
    run.close()
    run = _Run(srv, state, cooldown=3600.0)
    try:
        post(srv, "bob", "@alice again")
        post(srv, "carol", "@alice hello")
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
    post(srv, "bob", "@alice first")
    wait_until(lambda: responder.stats.turns == 1, "the first turn")
    responder.stop()
    client.close()
    # The documented server redelivers the unacked mention; the responder's file knows it.
    client, responder, prompts = run()
    try:
        post(srv, "carol", "@alice second")
        wait_until(lambda: len(prompts) >= 1, "the second turn's prompt")
        _then_a_marker(srv, prompts)
        assert len(prompts) == 2 and "second" in prompts[0], prompts
        assert not any("@alice first" in p for p in prompts)
    finally:
        responder.stop()
        client.close()
