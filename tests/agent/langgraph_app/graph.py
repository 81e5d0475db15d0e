"""A tiny graph for the LangGraph server tests: it "posts" one reply per run.

It stands for a deployed agent; the trigger under test only needs a real server running some
graph, and the run's final state must show a successful post_chat for the reply count.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, ToolMessage
from langgraph.graph import MessagesState, StateGraph


def reply(state: MessagesState) -> dict[str, Any]:
    """Answer the last message with a post_chat call and its (pretend) result."""
    n = len(state["messages"])
    call = {"name": "post_chat", "args": {"message": "hi"}, "id": f"call_{n}"}
    return {
        "messages": [
            AIMessage(content="", tool_calls=[call]),
            ToolMessage(content="Posted.", name="post_chat", tool_call_id=f"call_{n}"),
        ]
    }


builder = StateGraph(MessagesState)
builder.add_node("reply", reply)
builder.set_entry_point("reply")
graph = builder.compile()
