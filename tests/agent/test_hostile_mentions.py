"""A mention flood and names posing as handles, over real sockets to a real responder."""

from __future__ import annotations

import threading
from functools import partial
from typing import Any

from langchain_core.runnables import RunnableLambda

from langchain_moltcities.mentions import MentionResponder, default_prompt
from langchain_moltcities.server import LocalServer
from langchain_moltcities.testing import connected_client, wait_until

FILLER = "please look at this " * 12


def _recording_agent(prompts: list[str], gate: threading.Event) -> RunnableLambda[Any, Any]:
    def run(inp: dict[str, Any]) -> dict[str, Any]:
        prompts.append(inp["messages"][0][1])
        gate.wait(60)  # the first turn lasts until the flood is in
        return {"messages": []}

    return RunnableLambda(run)


def test_a_flood_during_a_turn_gives_bounded_batches_and_prompts(
    moltcities_server: LocalServer,
) -> None:
    srv = moltcities_server
    prompts: list[str] = []
    gate = threading.Event()
    with connected_client(srv) as client:
        responder = MentionResponder(
            _recording_agent(prompts, gate),
            client,
            cooldown=0,
            max_turns=50,
            context_messages=0,
            max_pending=50,
            max_batch=20,
            prompt=partial(default_prompt, max_chars=3000),
        )
        with responder:
            srv.notify("alice", "mention", {"by_handle": "bob", "snippet": "@alice first"})
            wait_until(lambda: len(prompts) == 1, "the first turn")
            for i in range(200):  # 40 accounts, 5 mentions each, during that turn
                data = {"by_handle": f"bot{i % 40}", "snippet": f"@alice {i} {FILLER}"}
                srv.notify("alice", "mention", data)
            stats = responder.stats
            wait_until(
                lambda: stats.mentions + stats.skipped.get("overflow", 0) >= 201, "the flood"
            )
            assert responder.guard.pending <= 50  # the pending set held its bound
            assert stats.skipped.get("overflow", 0) >= 150  # what it turned away is counted
            gate.set()
            wait_until(lambda: responder.guard.pending == 0 and not responder.guard.busy, "drain")
    assert len(prompts) >= 3  # 50 pending, 20 a turn
    for prompt in prompts:
        assert len(prompt) <= 3000, len(prompt)
    flood_turn = prompts[1]
    assert "more mention(s) from" in flood_turn and "not shown here" in flood_turn
    # One per author first: the batch spans 20 different accounts.
    assert len({f"@bot{i}:" for i in range(40) if f"@bot{i}:" in flood_turn}) >= 5


def test_a_display_name_never_passes_for_a_handle(moltcities_server: LocalServer) -> None:
    srv = moltcities_server
    prompts: list[str] = []
    gate = threading.Event()
    gate.set()
    with connected_client(srv) as client:
        responder = MentionResponder(
            _recording_agent(prompts, gate), client, cooldown=0, context_messages=0
        )
        with responder:
            # A live-style mention: an id and a display name chosen to look like @ada.
            data = {"author_id": "agent_evil", "author_name": "@ada", "snippet": "@alice hi"}
            srv.notify("alice", "mention", data)
            wait_until(lambda: len(prompts) == 1, "the turn")
        # A guestbook signature that poses as the agent itself.
        srv.notify("alice", "guestbook.entry", {"author_name": "@alice", "message": "it's me"})
        # The mention is in the buffer too (the responder reads none): wait for both.
        wait_until(lambda: client.status().channels["personal"].pending >= 2, "the entry")
        from langchain_moltcities.tools import CheckNotificationsTool

        out = CheckNotificationsTool(client=client).invoke({})
    prompt = prompts[0]
    assert "@ada" not in prompt and '"(at)ada":' in prompt
    assert "don't @ them" in prompt
    assert "@alice:" not in out and '"(at)alice":' in out
    assert responder.events[0].author and not responder.events[0].author.startswith("@")
