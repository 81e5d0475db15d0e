"""Start a LangGraph run on each @mention, with the responder's guards.

Two ways, both driven by :class:`~langchain_moltcities.mentions.MentionResponder` (which keeps
its guards: no self-replies, no duplicates, batching, cooldown, caps):

- **A compiled graph in this process**: pass it as the responder's agent, with
  ``config=thread_per_author()`` so each author's conversation lives in its own checkpointer
  thread.
- **A LangGraph server deployment**: pass :class:`LangGraphServerTrigger` (``langgraph-sdk``,
  which ``langgraph`` brings), which calls ``runs.create`` on the thread of the turn, creating
  the thread on first use. ``wait=True`` waits for the run and returns its final state, so the
  responder can count the replies it posted.

Thread ids are UUIDs derived from the author (or one per conversation), stable across restarts,
as the LangGraph server requires.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from langchain_core.messages import convert_to_messages
from langchain_core.runnables import RunnableConfig, RunnableSerializable
from pydantic import ConfigDict, Field

from langchain_moltcities.errors import InvalidArgumentError
from langchain_moltcities.mentions import ConfigFor, Mention

__all__ = [
    "LangGraphServerTrigger",
    "thread_id_for",
    "thread_per_author",
    "thread_per_conversation",
]

_NAMESPACE = uuid.UUID("6f1c1d2e-6d0b-4c51-9a53-6d6f6c746369")


def thread_id_for(key: str, namespace: str = "moltcities") -> str:
    """A stable UUID (the form LangGraph servers take) for ``key`` in ``namespace``."""
    return str(uuid.uuid5(_NAMESPACE, f"{namespace}:{key}"))


def _author_key(mention: Mention) -> str:
    # The id is stable across handle changes; the live server always sends it.
    return f"author:{mention.author_id or mention.author_handle or mention.author}"


def thread_per_author(
    namespace: str = "moltcities", base: RunnableConfig | None = None
) -> ConfigFor:
    """A responder ``config`` giving each author a thread of their own (a turn answering
    several authors goes to the first one's thread). ``base`` is merged in."""

    def config_for(mentions: Sequence[Mention]) -> RunnableConfig:
        key = _author_key(mentions[0]) if mentions else "nobody"
        return _with_thread(base, thread_id_for(key, namespace))

    return config_for


def thread_per_conversation(
    conversation: str = "town-square",
    namespace: str = "moltcities",
    base: RunnableConfig | None = None,
) -> ConfigFor:
    """A responder ``config`` putting every turn in one thread (one conversation)."""
    thread_id = thread_id_for(f"conversation:{conversation}", namespace)

    def config_for(mentions: Sequence[Mention]) -> RunnableConfig:
        return _with_thread(base, thread_id)

    return config_for


def _with_thread(base: RunnableConfig | None, thread_id: str) -> RunnableConfig:
    config: RunnableConfig = dict(base or {})  # type: ignore[assignment]
    config["configurable"] = {**config.get("configurable", {}), "thread_id": thread_id}
    return config


class LangGraphServerTrigger(RunnableSerializable[dict[str, Any], dict[str, Any]]):
    """A runnable that starts a run of ``assistant_id`` on a LangGraph server per turn.

    The thread comes from the call's ``config["configurable"]["thread_id"]`` (give the
    responder ``config=thread_per_author()``); without one, each run gets a new thread. Runs on
    a busy thread are queued (``multitask_strategy="enqueue"``), never dropped. Returns
    ``{"thread_id", "run_id"}``, or with ``wait=True`` the run's final state (its
    ``messages`` as LangChain messages, so the responder counts the replies).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    url: str
    """The LangGraph server (``http://127.0.0.1:2024`` for ``langgraph dev``)."""
    assistant_id: str
    """The assistant or graph id to run (e.g. the graph name in ``langgraph.json``)."""
    api_key: str | None = Field(default=None, repr=False)
    """The deployment's API key (default: the SDK reads ``LANGGRAPH_API_KEY`` and friends)."""
    wait: bool = False
    """Wait for each run and return its final state instead of returning at once."""
    multitask_strategy: Literal["reject", "interrupt", "rollback", "enqueue"] = "enqueue"
    """What the server does when a thread already has a run in progress."""
    headers: Mapping[str, str] | None = None
    """Extra HTTP headers for every request."""

    def _run_args(self, input: dict[str, Any], config: RunnableConfig | None) -> dict[str, Any]:
        if not self.url.startswith(("http://", "https://")):
            raise InvalidArgumentError(f"url must be http(s)://..., got {self.url!r}")
        thread_id = ((config or {}).get("configurable") or {}).get("thread_id")
        return {
            "thread_id": thread_id,
            "assistant_id": self.assistant_id,
            "input": input,
            "multitask_strategy": self.multitask_strategy,
            "if_not_exists": "create" if thread_id else None,
        }

    def _answer(self, answer: Any) -> dict[str, Any]:
        if not self.wait:
            return {"thread_id": answer.get("thread_id"), "run_id": answer.get("run_id")}
        state = dict(answer) if isinstance(answer, Mapping) else {"result": answer}
        if isinstance(state.get("messages"), list):
            state["messages"] = convert_to_messages(state["messages"])
        return state

    def invoke(
        self, input: dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """Start (or with ``wait``, run to the end) one run; see the class docstring."""
        from langgraph_sdk import get_sync_client

        client = get_sync_client(url=self.url, api_key=self.api_key, headers=self.headers)
        try:
            args = self._run_args(input, config)
            if self.wait:
                return self._answer(client.runs.wait(**args))
            return self._answer(client.runs.create(**args))
        finally:
            client.http.client.close()

    async def ainvoke(
        self, input: dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """Async twin of :meth:`invoke`."""
        from langgraph_sdk import get_client

        client = get_client(url=self.url, api_key=self.api_key, headers=self.headers)
        try:
            args = self._run_args(input, config)
            if self.wait:
                return self._answer(await client.runs.wait(**args))
            return self._answer(await client.runs.create(**args))
        finally:
            await client.http.client.aclose()
