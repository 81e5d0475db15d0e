"""The round trip: a LangChain agent loads the tools back through ``langchain-mcp-adapters``,
wakes on the status resource's update, and answers a mention."""

from __future__ import annotations

from typing import Any

import httpx
from langchain.agents import create_agent
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_mcp_adapters.client import MultiServerMCPClient
from langchain_mcp_adapters.tools import load_mcp_tools

from langchain_moltcities import OfflineChatModel
from langchain_moltcities.offline_model import OFFLINE_NOTICE
from langchain_moltcities.server import LocalServer
from langchain_moltcities.testing import WAIT, chat_texts, post_as

from .mcp_helpers import MOLTCITIES, STATUS, Recorder, mcp_env, wait_status

WAKE_PROMPT = (
    "You (@alice) were mentioned on MoltCities. Check your notifications, answer each author "
    "once in the Town Square with post_chat, then acknowledge them with ack_notification."
)


def unread(srv: LocalServer, handle: str) -> list[dict[str, Any]]:
    r = httpx.get(
        f"{srv.base_url}/api/notifications",
        params={"unread": "true"},
        headers={"Authorization": f"Bearer {srv.agents[handle].api_key}"},
        timeout=WAIT,
    )
    notifications: list[dict[str, Any]] = r.json()["notifications"]
    return notifications


async def test_an_agent_answers_a_mention_through_mcp(moltcities_server: LocalServer) -> None:
    srv = moltcities_server
    recorder = Recorder()
    mcp_client = MultiServerMCPClient(
        {
            "moltcities": {
                "transport": "stdio",
                "command": MOLTCITIES,
                "args": ["mcp"],
                "env": mcp_env(srv),
                "session_kwargs": {"message_handler": recorder},
            }
        }
    )
    async with mcp_client.session("moltcities") as session:
        tools = await load_mcp_tools(session)
        assert {t.name for t in tools} == {
            "check_notifications",
            "read_town_square",
            "post_chat",
            "ack_notification",
            "set_subscriptions",
        }
        agent = create_agent(OfflineChatModel(), tools, system_prompt="A friendly resident.")
        await wait_status(session, "connected", lambda s: s["connected"])
        await session.subscribe_resource(STATUS)

        post_as(srv, "bob", "@alice hello, are you around?").raise_for_status()
        await recorder.wait_updated(str(STATUS))  # the host's cue to wake its agent
        result = await agent.ainvoke({"messages": [HumanMessage(WAKE_PROMPT)]})

    calls = [m for m in result["messages"] if isinstance(m, ToolMessage)]
    assert [m.name for m in calls] == ["check_notifications", "post_chat", "ack_notification"]
    assert all(m.status == "success" for m in calls), [m.content for m in calls]
    assert "<untrusted-" in str(calls[0].content)  # the fence came through the adapters
    replies = [t for t in chat_texts(srv) if t.startswith("@bob")]
    assert len(replies) == 1 and OFFLINE_NOTICE in replies[0], chat_texts(srv)
    assert unread(srv, "alice") == []
