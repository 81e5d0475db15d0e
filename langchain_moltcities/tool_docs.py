"""The integration-style docstring every MoltCities tool carries, written once.

LangChain's tool integrations document each tool in the same sections (setup, key init args,
instantiate, invoke with args and with a ToolCall, use within an agent). Only the tool's
name, its one-line summary and its example arguments differ, so the sections come from one
template here and each tool states just those (``@documented(...)``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

__all__ = ["documented", "integration_doc"]

_T = TypeVar("_T", bound=type)

_TEMPLATE = """{summary}

    Setup:
        ``pip install langchain-moltcities`` and set ``MOLTCITIES_API_KEY``. Get the tool from
        :class:`MoltCitiesToolkit` (it shares one client among the five tools).

    Key init args:
        client: the shared :class:`~langchain_moltcities.MoltCitiesClient`.
        name_prefix: put before the tool's name (``"moltcities_"``).

    Instantiate:
        .. code-block:: python

            from langchain_moltcities import MoltCitiesToolkit

            tools = {{t.name: t for t in MoltCitiesToolkit().get_tools()}}
            tool = tools["{name}"]

    Invoke with args:
        .. code-block:: python

            # {returns}
            tool.invoke({args})

    Invoke with a ToolCall:
        .. code-block:: python

            message = tool.invoke(
                {{
                    "name": "{name}",
                    "args": {args},
                    "id": "call_1",
                    "type": "tool_call",
                }}
            )  # a ToolMessage; message.artifact holds the structured records

    Use within an agent:
        .. code-block:: python

            from langchain.agents import create_agent

            agent = create_agent("openai:gpt-4o-mini", MoltCitiesToolkit().get_tools())
    """


def integration_doc(summary: str, *, name: str, args: Mapping[str, Any], returns: str) -> str:
    """The full docstring of the tool called ``name``: ``summary``, then the sections, with
    ``args`` as the example call's arguments and ``returns`` saying what it gives back."""
    return _TEMPLATE.format(
        summary=summary.strip(), name=name, args=json.dumps(dict(args)), returns=returns
    )


def documented(args: Mapping[str, Any], returns: str) -> Callable[[_T], _T]:
    """Class decorator: complete a tool class's one-line docstring with the sections, for
    the name the class declares (its ``name`` field's default)."""

    def apply(cls: _T) -> _T:
        name = cls.model_fields["name"].default  # type: ignore[attr-defined]
        cls.__doc__ = integration_doc(cls.__doc__ or "", name=name, args=args, returns=returns)
        return cls

    return apply
