"""The responder's default prompt names the tools as the model sees them: with a toolkit's
``name_prefix`` (``moltcities_post_chat``), found in the agent's own tools."""

from __future__ import annotations

import re
from typing import Any

from langchain.agents import create_agent
from langchain_core.runnables import RunnableLambda

from langchain_moltcities import MoltCitiesClient, MoltCitiesToolkit, OfflineChatModel
from langchain_moltcities.mentions import Mention, MentionResponder, default_prompt
from langchain_moltcities.protocol import ChatFrame
from langchain_moltcities.server import LocalServer
from langchain_moltcities.testing import chat_texts, connected_client, post_as, wait_until

BARE = re.compile(r"(?<![A-Za-z0-9_-])(post_chat|ack_notification)\b")


def recording(prompts: list[str]) -> Any:
    """A ``make_input`` that keeps each turn's prompt and passes it on as usual."""

    def make_input(text: str) -> dict[str, Any]:
        prompts.append(text)
        return {"messages": [("user", text)]}

    return make_input


def test_prefixed_toolkit_gets_a_prompt_with_the_prefixed_names(
    moltcities_server: LocalServer,
) -> None:
    srv = moltcities_server
    prompts: list[str] = []
    with connected_client(srv) as client:
        tools = MoltCitiesToolkit(client=client, name_prefix="moltcities_").get_tools()
        agent = create_agent(OfflineChatModel(), tools)
        with MentionResponder(agent, client, cooldown=60, make_input=recording(prompts)) as r:
            post_as(srv, "bob", "hey @alice, are you around?").raise_for_status()
            wait_until(lambda: r.stats.replies == 1, "the reply through moltcities_post_chat")
    assert prompts, "no turn ran"
    assert "moltcities_post_chat" in prompts[0] and "moltcities_ack_notification" in prompts[0]
    assert not BARE.search(prompts[0]), prompts[0]  # no tool named as it is not called
    assert any(t.startswith("@bob ") for t in chat_texts(srv)), chat_texts(srv)


def test_an_unprefixed_toolkit_and_an_explicit_prefix(moltcities_server: LocalServer) -> None:
    srv = moltcities_server
    plain: list[str] = []
    explicit: list[str] = []
    with connected_client(srv) as client:
        agent = create_agent(OfflineChatModel(), MoltCitiesToolkit(client=client).get_tools())
        # A runnable whose tools cannot be seen: the caller names the prefix.
        opaque: RunnableLambda[Any, Any] = RunnableLambda(lambda _: {"messages": []})
        with (
            MentionResponder(agent, client, cooldown=0, make_input=recording(plain)) as one,
            MentionResponder(
                opaque, client, cooldown=0, make_input=recording(explicit), tool_prefix="mc_"
            ) as two,
        ):
            post_as(srv, "bob", "@alice hello").raise_for_status()
            wait_until(lambda: one.stats.turns == 1 and two.stats.turns == 1, "both turns")
            wait_until(lambda: plain and explicit, "both prompts")
    assert "with post_chat" in plain[0] and "with ack_notification" in plain[0]
    assert "with mc_post_chat" in explicit[0] and "with mc_ack_notification" in explicit[0]


def test_default_prompt_takes_the_prefix_and_a_toolkit_of_another_client_is_not_ours(
    moltcities_server: LocalServer,
) -> None:
    mention = Mention(id="m1", author_id="a-bob", author_handle="bob", received_at=0.0)
    chat = [ChatFrame(id="c1", message="hi")]
    text = default_prompt([mention], chat, "alice", tool_prefix="x_")
    assert "with x_post_chat" in text and "with x_ack_notification" in text
    assert "with post_chat" in default_prompt([mention], [], "alice")
    # Tools bound to another client are another agent's business: this client's prompt
    # keeps the plain names.
    srv = moltcities_server
    other = MoltCitiesClient(api_key=srv.agents["bob"].api_key, base_url=srv.base_url)
    prompts: list[str] = []
    # The agent's model calls bob's tools, which start his client: closed here, not leaked.
    with other, connected_client(srv) as client:
        theirs = MoltCitiesToolkit(client=other, name_prefix="bob_").get_tools()
        agent = create_agent(OfflineChatModel(), theirs)
        with MentionResponder(agent, client, cooldown=0, make_input=recording(prompts)) as r:
            post_as(srv, "carol", "@alice ping").raise_for_status()
            wait_until(lambda: prompts and r.stats.turns == 1, "a turn")
            wait_until(lambda: not r.guard.busy, "the turn to end")
    assert "with post_chat" in prompts[0] and "bob_post_chat" not in prompts[0]
