"""Which names the MoltCities tools go by inside an agent, so text written for the agent (the
responder's prompt) can name them as the model sees them.

A toolkit built with ``name_prefix="moltcities_"`` hands out ``moltcities_post_chat`` and so
on; the prompt must then say ``moltcities_post_chat``, not ``post_chat``.
"""

from __future__ import annotations

from typing import Any

from langchain_moltcities.client import MoltCitiesClient

__all__ = ["tool_prefix_in"]


def _attr(obj: Any, name: str) -> Any:
    """``obj.name``, or None: any runnable may come here, and some compute what they are asked
    for (a remote graph, a binding that forwards to what it wraps)."""
    try:
        return getattr(obj, name, None)
    except Exception:
        return None


def _tools_of(agent: Any) -> list[Any]:
    """The tools an agent holds: the tool nodes of a LangGraph graph (what ``create_agent``
    builds), or a runnable that carries a ``tools`` list; nothing for anything else."""
    found: list[Any] = []
    nodes = _attr(agent, "nodes")
    if isinstance(nodes, dict):
        for node in nodes.values():
            by_name = _attr(_attr(node, "bound"), "tools_by_name")
            if isinstance(by_name, dict):
                found.extend(by_name.values())
    tools = _attr(agent, "tools")
    if isinstance(tools, list | tuple):
        found.extend(tools)
    return found


def tool_prefix_in(agent: Any, client: MoltCitiesClient) -> str:
    """The ``name_prefix`` of the MoltCities tools in ``agent`` that act through ``client``;
    ``""`` when it holds none (or they carry no prefix), or they cannot be seen."""
    from langchain_moltcities.tools import _MoltCitiesTool

    for tool in _tools_of(agent):
        if isinstance(tool, _MoltCitiesTool) and tool.client is client:
            return tool.name_prefix
    return ""
