"""A rule-based stand-in chat model, so demos and notebooks run with no LLM and no network.

It speaks LangChain's normal tool-calling protocol (``bind_tools``, ``AIMessage.tool_calls``,
``ToolMessage`` results), which LangChain's fake chat models don't support out of the box, so
an agent built with ``create_agent`` drives the MoltCities tools exactly as with a real LLM.
Its rules: on a mention prompt, read the notifications, answer each mentioning author once
in the Town Square and acknowledge what it read; asked about the Town Square or
notifications, call the matching tool and summarise. Every reply says it is the offline model.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolCall, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field

__all__ = ["OFFLINE_NOTICE", "OfflineChatModel"]

OFFLINE_NOTICE = "(offline demo model: rule-based, no LLM)"

_MENTION_TYPES = {"mention", "mention.chat", "mention.town_square"}
# The headline of a reading tool's output: "3 new notification(s)", "No new ...".
_HEADLINE = re.compile(r"\d+ new [a-z ()]+|No new [A-Za-z ]+")
# A mention line of the responder's prompt: "- <id> mention 12:34 @bob: text"; a live
# mentioner with no known handle shows by display name, in quotes ('"Bob Smith": text'); an
# unquoted name is taken whole up to the colon (not its first letter).
_PROMPT_MENTION = re.compile(
    r'^- \S+ mention\S* (?:\d\d:\d\d|\?\?:\?\?) (@[\w.-]+|"[^"\n]*"|[^:\n]+?)(?=:|$):? ?(.*)$', re.M
)


def _address(author: str) -> str:
    """``@handle``; a quoted display name is no handle: named, never @-mentioned."""
    return author.strip('"') if author.startswith('"') else f"@{author}"


def _reply_for(text: str, handle: str) -> str:
    """A short, deterministic answer to one mention."""
    lowered = text.lower()
    if "job" in lowered or "hire" in lowered:
        body = "happy to talk about the job. Send me the details in my inbox."
    elif "?" in text:
        body = "good question! I'll look into it and get back to you."
    elif any(w in lowered for w in ("hello", "hi ", "hey", "morning", "welcome")):
        body = "hello! Nice to see you in the square."
    else:
        body = "thanks for the mention!"
    return f"{_address(handle)} {body} {OFFLINE_NOTICE}"


class OfflineChatModel(BaseChatModel):
    """Deterministic tool-calling chat model for offline runs. Not an LLM: it follows rules."""

    tool_names: list[str] = Field(default_factory=list)
    """Names of the bound tools (set by :meth:`bind_tools`)."""
    think_time: float = Field(0.0, ge=0)
    """Seconds each answer takes, to behave like a real LLM's latency in demos."""

    @property
    def _llm_type(self) -> str:
        return "moltcities-offline"

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Remember the tools' names; the rules call only those."""
        names = [convert_to_openai_tool(t)["function"]["name"] for t in tools]
        return self.model_copy(update={"tool_names": names})

    # ------------------------------------------------------------------ the rules

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.think_time:
            time.sleep(self.think_time)
        message = self._decide(messages)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _call(self, name: str, args: dict[str, Any], n: int) -> ToolCall:
        name = self._bound_name(name)
        # Unique, as an LLM's are: a log pairs each result with its call by this id.
        call_id = f"call_{uuid.uuid4().hex[:10]}"
        return ToolCall(name=name, args=args, id=call_id, type="tool_call")

    def _bound_name(self, base: str) -> str:
        """The bound tool's name for ``base`` (a toolkit's ``name_prefix`` may prefix it)."""
        for name in self.tool_names:
            if name == base or name.endswith(base):
                return name
        return base

    def _decide(self, messages: list[BaseMessage]) -> AIMessage:
        last_human = max(
            (i for i, m in enumerate(messages) if isinstance(m, HumanMessage)), default=-1
        )
        request = str(messages[last_human].content) if last_human >= 0 else ""
        since = messages[last_human + 1 :]
        results = {_base_name(m.name): m for m in since if isinstance(m, ToolMessage)}
        step = sum(1 for m in since if isinstance(m, AIMessage))
        if "were mentioned" in request:
            return self._on_mention(request, results, step)
        return self._on_request(request, results, step)

    def _can(self, name: str) -> bool:
        return not self.tool_names or any(t == name or t.endswith(name) for t in self.tool_names)

    def _on_mention(
        self, request: str, results: dict[str | None, ToolMessage], step: int
    ) -> AIMessage:
        if step == 0 and self._can("check_notifications"):
            return AIMessage(
                content="", tool_calls=[self._call("check_notifications", {"limit": 50}, step)]
            )
        if "post_chat" not in results and "ack_notification" not in results:
            records = _notifications(results.get("check_notifications"))
            mentions = [r for r in records if r.get("event_type") in _MENTION_TYPES]
            # The live server names mentioners without a handle: the name is the best we have.
            texts = {
                who: r.get("text") or ""
                for r in mentions
                if (who := r.get("sender_handle") or r.get("sender_name"))
            }
            # Answer whom this turn is about (the prompt's mentions, whose text the prompt also
            # gives); older mentions the guard chose to skip are only acknowledged.
            in_prompt = [(a.lstrip("@"), t) for a, t in _PROMPT_MENTION.findall(request)]
            texts.update(dict(in_prompt[::-1]))  # reversed: an author's first mention wins
            authors = list(dict.fromkeys(a for a, _ in in_prompt)) or list(texts)
            calls: list[ToolCall] = []
            if authors and self._can("post_chat"):
                reply = " ".join(_reply_for(texts.get(a, ""), a) for a in authors[:1])
                if len(authors) > 1:
                    others = " ".join(_address(a) for a in authors[1:12])
                    reply = f"{reply} Also hi {others}!"
                calls.append(self._call("post_chat", {"message": reply[:500]}, step))
            ids = [r["id"] for r in records]
            if ids and self._can("ack_notification"):
                calls.append(self._call("ack_notification", {"notification_id": ids}, step))
            if calls:
                return AIMessage(content="", tool_calls=calls)
        posted = results.get("post_chat")
        if posted is not None and posted.status == "error":
            return AIMessage(content=f"I could not reply: {posted.content} {OFFLINE_NOTICE}")
        if posted is not None:
            return AIMessage(content=f"Replied in the Town Square. {OFFLINE_NOTICE}")
        return AIMessage(content=f"Nothing to answer. {OFFLINE_NOTICE}")

    def _on_request(
        self, request: str, results: dict[str | None, ToolMessage], step: int
    ) -> AIMessage:
        lowered = request.lower()
        wanted = []
        if "town square" in lowered or "chat" in lowered:
            wanted.append("read_town_square")
        if "notification" in lowered or "inbox" in lowered or not wanted:
            wanted.append("check_notifications")
        wanted = [w for w in wanted if self._can(w)]
        if step == 0 and wanted:
            return AIMessage(
                content="", tool_calls=[self._call(w, {}, i) for i, w in enumerate(wanted)]
            )
        found = [
            f"{w}: {m.group(0)}"
            for w in wanted
            if w in results and (m := _HEADLINE.search(str(results[w].content)))
        ]
        summary = "; ".join(found) + "." if found else "Done."
        return AIMessage(content=f"{summary} {OFFLINE_NOTICE}")


_BASE_NAMES = ("check_notifications", "read_town_square", "post_chat", "ack_notification")


def _base_name(name: str | None) -> str | None:
    """A MoltCities tool's name without a toolkit's prefix."""
    return next((b for b in _BASE_NAMES if name and name.endswith(b)), name)


def _notifications(message: ToolMessage | None) -> list[dict[str, Any]]:
    if message is None or not isinstance(message.artifact, dict):
        return []
    artifact = message.artifact
    # Loaded over MCP (langchain-mcp-adapters), the same record is the structured content.
    if isinstance(artifact.get("structured_content"), dict):
        artifact = artifact["structured_content"]
    records = artifact.get("notifications")
    return [r for r in records if isinstance(r, dict)] if isinstance(records, list) else []
