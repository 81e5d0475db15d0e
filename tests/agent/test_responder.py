"""MentionResponder over real sockets: an agent wakes on @mentions and replies once."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
from langchain.agents import create_agent
from langchain_core.runnables import RunnableLambda

from langchain_moltcities import MoltCitiesClient, MoltCitiesToolkit, OfflineChatModel
from langchain_moltcities.mentions import MentionResponder
from langchain_moltcities.offline_model import OFFLINE_NOTICE
from langchain_moltcities.protocol import NotificationFrame
from langchain_moltcities.server import LocalServer
from langchain_moltcities.testing import WAIT, chat_texts, connected_client, post_as, wait_until


def offline_agent(client: MoltCitiesClient) -> Any:
    return create_agent(
        OfflineChatModel(),
        MoltCitiesToolkit(client=client).get_tools(),
        system_prompt="You are a friendly MoltCities resident.",
    )


def unread(srv: LocalServer, handle: str) -> list[dict[str, Any]]:
    r = httpx.get(
        f"{srv.base_url}/api/notifications",
        params={"unread": "true"},
        headers={"Authorization": f"Bearer {srv.agents[handle].api_key}"},
        timeout=WAIT,
    )
    return list(r.json()["notifications"])


def test_agent_replies_to_a_mention_once(any_moltcities_server: LocalServer) -> None:
    srv = any_moltcities_server
    srv.register_agent("dave")

    def turns_ended() -> int:
        return sum(e.kind == "turn_end" for e in responder.events)

    with connected_client(srv) as client:
        responder = MentionResponder(offline_agent(client), client, cooldown=60)
        with responder:
            post_as(srv, "bob", "hey @alice, are you around?").raise_for_status()
            wait_until(lambda: turns_ended() == 1, "a turn")
            post_as(srv, "carol", "just chatting, nobody mentioned").raise_for_status()
            # A mention posted after carol's chat: once its turn is over, a turn for carol's
            # chat (which must not come) would have come first.
            post_as(srv, "dave", "@alice one more thing").raise_for_status()
            wait_until(lambda: turns_ended() == 2, "the turn for dave's mention")
        # Live mentions carry no handle: the responder finds it in the chat history.
        replies = [t for t in chat_texts(srv) if t.startswith("@bob ")]
        assert len(replies) == 1, chat_texts(srv)
        assert OFFLINE_NOTICE in replies[0]
        assert "good question" in replies[0]  # the model read the mention's text (a question)
        assert not [t for t in chat_texts(srv) if t.startswith("@carol")]
        assert responder.stats.mentions == 2 and responder.stats.turns == 2
        assert responder.stats.replies == 2 and responder.stats.errors == 0
        reply_event = next(e for e in responder.history if e.kind == "reply")
        assert reply_event.latency is not None and reply_event.latency > 0
        if srv.mode == "documented":  # the live server never lists mentions over REST
            wait_until(lambda: unread(srv, "alice") == [], "the mention to be acknowledged")


def settled(responder: MentionResponder, mentions: int, turns: int, waiting: int) -> bool:
    """No turn running, and exactly these mentions taken, turns run and mentions waiting."""
    return (
        not responder.guard.busy
        and responder.guard.pending == waiting
        and responder.stats.mentions == mentions
        and responder.stats.turns == turns
    )


def test_two_bots_mentioning_each_other_stop_at_the_cap(moltcities_server: LocalServer) -> None:
    srv = moltcities_server

    def pinger(client: MoltCitiesClient, other: str) -> RunnableLambda[Any, Any]:
        return RunnableLambda(lambda _: client.post_chat(f"@{other} ping"))

    with connected_client(srv, "alice") as alice, connected_client(srv, "bob") as bob:
        a = MentionResponder(pinger(alice, "bob"), alice, cooldown=0, max_turns=3, window=600)
        b = MentionResponder(pinger(bob, "alice"), bob, cooldown=0, max_turns=3, window=600)
        with a, b:
            post_as(srv, "carol", "@alice start the game").raise_for_status()
            # Over the cap a mention waits for the window (600 s here): no turn, no ping.
            # Every post so far is a mention a responder took (three turns each, bob's last
            # @alice waiting) and neither has a turn running: nothing is left that could post
            # again. Waiting for this state, not sleeping, also catches a loop that goes on late.
            wait_until(lambda: settled(a, 4, 3, 1) and settled(b, 3, 3, 0), "both bots to settle")
            count = len(chat_texts(srv))
        assert a.stats.turns == 3 and b.stats.turns == 3
        assert count == 1 + 3 + 3
        assert a.stats.deferred == 1 and b.stats.deferred == 0  # bob's last @alice


def test_mentions_while_busy_are_batched_into_one_turn(moltcities_server: LocalServer) -> None:
    srv = moltcities_server
    for handle in ("dave", "erin"):
        srv.register_agent(handle)
    release = threading.Event()
    prompts: list[str] = []

    def slow_agent(inp: dict[str, Any]) -> dict[str, Any]:
        prompts.append(inp["messages"][0][1])
        release.wait(WAIT)
        return {"messages": []}

    with connected_client(srv) as client:
        responder = MentionResponder(RunnableLambda(slow_agent), client, cooldown=0)
        with responder:
            post_as(srv, "bob", "@alice first").raise_for_status()
            wait_until(lambda: len(prompts) == 1, "the first turn")
            for who in ("carol", "dave", "erin"):
                post_as(srv, who, f"@alice from {who}").raise_for_status()
            wait_until(lambda: responder.stats.mentions == 4, "the three mentions to queue")
            release.set()
            wait_until(lambda: len(prompts) == 2, "the batched turn")
            wait_until(lambda: responder.stats.turns == 2 and not responder.guard.busy, "idle")
        assert responder.stats.batched == 2
        assert all(f"from {who}" in prompts[1] for who in ("carol", "dave", "erin"))
        assert "untrusted-" in prompts[1]  # the mentions reach the agent fenced
        assert "@alice first" in prompts[1]  # the Town Square context comes along


def test_a_failing_agent_is_counted_and_the_loop_goes_on(moltcities_server: LocalServer) -> None:
    srv = moltcities_server
    calls: list[int] = []

    def flaky(_: Any) -> dict[str, Any]:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("model provider down")
        return {"messages": []}

    with connected_client(srv) as client:
        responder = MentionResponder(RunnableLambda(flaky), client, cooldown=0)
        with responder:
            post_as(srv, "bob", "@alice one").raise_for_status()
            wait_until(lambda: responder.stats.errors == 1, "the error")
            post_as(srv, "carol", "@alice two").raise_for_status()
            wait_until(lambda: len(calls) == 2, "the next turn")
        assert any(
            e.kind == "error" and "provider down" in (e.detail or "") for e in responder.events
        )


def test_stopped_responder_takes_no_more_mentions(moltcities_server: LocalServer) -> None:
    srv = moltcities_server
    calls: list[int] = []
    heard: list[NotificationFrame] = []
    with connected_client(srv) as client:
        responder = MentionResponder(RunnableLambda(lambda _: calls.append(1)), client)
        responder.start()
        responder.stop()
        responder.stop()  # twice is fine
        # Listeners are handed each mention in the order they were added, so once this one,
        # added after the responder's, has it, the responder's turn to see it has passed.
        client.add_mention_listener(heard.append)
        post_as(srv, "bob", "@alice anyone?").raise_for_status()
        wait_until(lambda: len(heard) == 1, "the mention to reach a listener")
        assert not any(t.name == "moltcities-mentions" for t in threading.enumerate())
    # Closing the client let the listener calls it had started finish.
    assert calls == [] and responder.stats.mentions == 0


async def test_async_responder_replies_and_stops(moltcities_server: LocalServer) -> None:
    srv = moltcities_server
    client = MoltCitiesClient(api_key=srv.agents["alice"].api_key, base_url=srv.base_url)
    async with client:
        assert await client.await_connected(timeout=WAIT)
        async with MentionResponder(offline_agent(client), client) as responder:
            await asyncio.to_thread(lambda: post_as(srv, "bob", "hello @alice").raise_for_status())
            for _ in range(int(WAIT * 50)):
                if responder.stats.replies:
                    break
                await asyncio.sleep(0.02)
        assert responder.stats.replies == 1
        assert not [t for t in asyncio.all_tasks() if t.get_name() == "moltcities-mentions"]
    texts = await asyncio.to_thread(chat_texts, srv)
    assert sum(t.startswith("@bob hello!") for t in texts) == 1


def test_the_event_log_keeps_the_last_max_events(moltcities_server: LocalServer) -> None:
    srv = moltcities_server
    with connected_client(srv) as client:
        responder = MentionResponder(
            RunnableLambda(lambda _: {"messages": []}), client, cooldown=0, max_events=3
        )
        with responder:
            for turns, who in enumerate(("bob", "carol"), start=1):
                post_as(srv, who, f"@alice from {who}").raise_for_status()
                wait_until(
                    lambda n=turns: responder.stats.turns == n and not responder.guard.busy,  # type: ignore[misc]
                    f"turn {turns} to end",
                )
        assert [e.kind for e in responder.events] == ["mention", "turn_start", "turn_end"]
        assert responder.events[0].author == "carol"
        assert responder.stats.mentions == 2  # the counters keep everything


def test_reply_cap_counts_the_agents_post_chat_calls(moltcities_server: LocalServer) -> None:
    srv = moltcities_server
    srv.register_agent("dave")
    with connected_client(srv) as client:
        responder = MentionResponder(
            offline_agent(client), client, cooldown=0, max_turns=10, max_replies=2
        )

        def handled() -> int:  # mentions that ran a turn to its end, were skipped, or wait
            if responder.guard.busy or responder.guard.pending > responder.stats.deferred:
                return -1
            return (
                responder.stats.turns
                + sum(responder.stats.skipped.values())
                + responder.stats.deferred
            )

        with responder:
            for n, who in enumerate(("bob", "carol", "dave"), start=1):
                post_as(srv, who, f"@alice hello from {who}").raise_for_status()
                wait_until(lambda n=n: handled() == n, f"mention {n} to be handled")  # type: ignore[misc]
        # dave's mention waits for the window (60 s) rather than being dropped for good.
        assert responder.stats.replies == 2 and responder.stats.deferred == 1
        assert responder.stats.skipped == {} and responder.guard.pending == 1
    assert not [t for t in chat_texts(srv) if t.startswith("@dave")]


def test_reply_count_with_a_checkpointer_counts_only_each_turns_replies(
    moltcities_server: LocalServer,
) -> None:
    """With a thread_id, create_agent returns the whole thread: earlier turns' post_chat
    results must not be counted again (3 real replies are 3, and the cap of 3 skips none)."""
    from langgraph.checkpoint.memory import InMemorySaver

    srv = moltcities_server
    srv.register_agent("dave")
    with connected_client(srv) as client:
        agent = create_agent(
            OfflineChatModel(),
            MoltCitiesToolkit(client=client).get_tools(),
            checkpointer=InMemorySaver(),
        )
        responder = MentionResponder(
            agent,
            client,
            cooldown=0,
            max_turns=10,
            max_replies=3,
            config={"configurable": {"thread_id": "town-square"}},
        )

        def handled() -> int:
            if responder.guard.busy or responder.guard.pending:
                return -1
            return responder.stats.turns + sum(responder.stats.skipped.values())

        with responder:
            for n, who in enumerate(("bob", "carol", "dave"), start=1):
                post_as(srv, who, f"@alice hello from {who}").raise_for_status()
                wait_until(lambda n=n: handled() == n, f"mention {n} to be handled")  # type: ignore[misc]
        assert responder.stats.skipped == {}
        assert responder.stats.turns == 3 and responder.stats.replies == 3
    for who in ("bob", "carol", "dave"):
        assert [t for t in chat_texts(srv) if t.startswith(f"@{who} ")], chat_texts(srv)
