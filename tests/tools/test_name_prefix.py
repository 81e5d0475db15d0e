"""A toolkit's name_prefix: two toolkits in one agent, no collision, references follow."""

from __future__ import annotations

import pytest
from langchain.agents import create_agent

from langchain_moltcities import MoltCitiesClient, MoltCitiesToolkit, OfflineChatModel
from langchain_moltcities.mentions import MentionResponder
from langchain_moltcities.server import LocalServer
from langchain_moltcities.testing import chat_texts, connected_client, post_as, wait_until

from .test_tools import call

OFFLINE_CLIENT = MoltCitiesClient(api_key="mc_" + "0" * 64, base_url="http://127.0.0.1:9")


def test_prefixed_names_and_their_cross_references() -> None:
    plain = MoltCitiesToolkit(client=OFFLINE_CLIENT).get_tools()
    prefixed = MoltCitiesToolkit(client=OFFLINE_CLIENT, name_prefix="moltcities_").get_tools()
    names = [t.name for t in prefixed]
    assert names == [f"moltcities_{t.name}" for t in plain]
    assert not {t.name for t in plain} & set(names)  # one agent can hold both sets
    check = prefixed[0]
    assert "moltcities_ack_notification" in check.description
    with pytest.raises(ValueError, match="name_prefix"):
        MoltCitiesToolkit(client=OFFLINE_CLIENT, name_prefix="bad prefix!").get_tools()


def test_prefixed_outputs_name_the_prefixed_tools(moltcities_server: LocalServer) -> None:
    srv = moltcities_server
    with connected_client(srv) as client:
        tools = {t.name: t for t in MoltCitiesToolkit(client=client, name_prefix="mc_").get_tools()}
        for i in range(3):
            srv.notify("alice", "inbox.message", {"from_handle": "bob", "preview": f"n{i}"})
        wait_until(lambda: client.status().channels["personal"].pending >= 3, "3 notifications")
        out = str(call(tools["mc_check_notifications"], {"limit": 1}).content)
        assert "with mc_ack_notification." in out and "call mc_check_notifications again" in out
        unknown = call(tools["mc_ack_notification"], {"notification_id": "nope"})
        assert "the ids mc_check_notifications shows" in str(unknown.content)


def test_an_agent_with_prefixed_tools_replies_and_is_counted(
    moltcities_server: LocalServer,
) -> None:
    srv = moltcities_server
    with connected_client(srv) as client:
        tools = MoltCitiesToolkit(client=client, name_prefix="moltcities_").get_tools()
        responder = MentionResponder(create_agent(OfflineChatModel(), tools), client, cooldown=0)
        with responder:
            post_as(srv, "bob", "@alice hello there").raise_for_status()
            wait_until(lambda: any(e.kind == "turn_end" for e in responder.events), "a turn")
        assert responder.stats.replies == 1 and responder.stats.errors == 0
    assert [t for t in chat_texts(srv) if t.startswith("@bob ")]
