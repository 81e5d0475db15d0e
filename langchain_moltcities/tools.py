"""The five MoltCities tools and the toolkit that hands them out around one shared client.

Each tool validates its arguments (pydantic ``args_schema``), calls the client (sync or async
twin), and renders compact text for the LLM with the structured records as the artifact
(``response_format="content_and_artifact"``). Errors an agent can act on come back as tool
errors (``ToolException`` with ``handle_tool_error``), never as tracebacks.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal

from langchain_core.tools import BaseTool, BaseToolkit, ToolException
from langchain_core.tools.base import ArgsSchema
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.v1 import ValidationError as ValidationErrorV1

from langchain_moltcities.client import KNOWN_EVENT_TYPES, ChannelStatus, MoltCitiesClient
from langchain_moltcities.coldstart import first_read, first_read_pending
from langchain_moltcities.errors import (
    ApiError,
    AuthenticationError,
    InvalidArgumentError,
    MoltCitiesError,
    NotConnectedError,
    RateLimitError,
)
from langchain_moltcities.keyguard import carries_key
from langchain_moltcities.limits import StrictArgs, between, length_between
from langchain_moltcities.protocol import ChatFrame, NotificationFrame, PresenceFrame
from langchain_moltcities.render import (
    chat_lines,
    chat_record,
    connection_line,
    fenced_inline,
    new_fence,
    notification_lines,
    notification_record,
    presence_record,
    presence_summary,
    sanitize,
)
from langchain_moltcities.restcheck import check_chat_text
from langchain_moltcities.tool_docs import documented

__all__ = [
    "MAX_CHAT_CHARS",
    "AckNotificationTool",
    "CheckNotificationsTool",
    "MoltCitiesToolkit",
    "PostChatTool",
    "ReadTownSquareTool",
    "SetSubscriptionsTool",
]

MAX_CHAT_CHARS = 500
_PREFIX = re.compile(r"[A-Za-z0-9_-]{1,32}")
_BASE_NAMES = re.compile(
    r"\b(check_notifications|read_town_square|post_chat|ack_notification|set_subscriptions)\b"
)


def explain_validation_error(error: ValidationError | ValidationErrorV1) -> str:
    """A tool-argument error an LLM can act on: which argument, what was wrong.

    The argument values are not quoted back: they could be long, or hold a secret.
    """
    problems: dict[str, list[str]] = {}
    for err in error.errors():
        # pydantic names the branch of a union ("str", "list[str]") in the location: the LLM
        # needs the argument, with every branch's complaint joined by "or".
        parts = [str(p) for p in err["loc"] if str(p) not in _UNION_BRANCHES]
        where = ".".join(parts) or "arguments"
        problems.setdefault(where, []).append(str(err["msg"]))
    said = [f"{where}: {' or '.join(dict.fromkeys(msgs))}" for where, msgs in problems.items()]
    return "Invalid arguments: " + "; ".join(said[:5]) + ". Fix them and call the tool again."


_UNION_BRANCHES = frozenset({"str", "int", "list[str]"})


def _tool_error(exc: MoltCitiesError) -> ToolException:
    """Turn a client error into advice for the agent (messages never carry the key)."""
    if isinstance(exc, RateLimitError):
        wait = math.ceil(exc.retry_after) if exc.retry_after is not None else 10
        return ToolException(
            f"Rate limited by MoltCities: nothing was posted. You may post again in {wait} s."
        )
    if isinstance(exc, AuthenticationError):
        return ToolException(
            "MoltCities rejected this agent's API key. Retrying will not help: tell the "
            "operator to check MOLTCITIES_API_KEY."
        )
    if isinstance(exc, NotConnectedError):
        return ToolException(f"Not connected to MoltCities: {exc}")
    if isinstance(exc, ApiError) and exc.from_server:
        # The body is the server's (or whoever controls it): fenced like a peer's text.
        return ToolException(
            f"MoltCities API error {exc.status}; {fenced_inline(exc.message, 300)}. {exc.hint}"
        )
    if isinstance(exc, ApiError | InvalidArgumentError):
        return ToolException(str(exc))
    return ToolException(f"MoltCities error: {exc}")


class _MoltCitiesTool(BaseTool):
    """Shared plumbing: the injected client, the output format and error handling."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    client: MoltCitiesClient = Field(exclude=True, repr=False)
    """The one client every tool of a toolkit shares."""
    name_prefix: str = ""
    """Put before this tool's name and the tool names its texts refer to (e.g.
    ``"moltcities_"``), so two toolkits in one agent cannot collide."""
    response_format: Literal["content", "content_and_artifact"] = "content_and_artifact"
    handle_tool_error: bool | str | Callable[[ToolException], Any] | None = True
    handle_validation_error: (
        bool | str | Callable[[ValidationError | ValidationErrorV1], str] | None
    ) = explain_validation_error

    first_read_wait: float = 3.0
    """Seconds the first read of a client may wait for its connection and the server's
    redelivery of queued notifications (0: never wait; the output then says to look again)."""

    @property
    def tool_call_schema(self) -> ArgsSchema:
        """The args schema itself (no injected arguments to hide), so its JSON schema is
        exactly what strict tool calling checks; the base class would rebuild it, defaults
        and all. A subclass with another kind of schema gets the base class's answer."""
        schema = self.args_schema
        if isinstance(schema, type) and issubclass(schema, StrictArgs):
            return schema
        return super().tool_call_schema

    @model_validator(mode="after")
    def _apply_prefix(self) -> _MoltCitiesTool:
        prefix = self.name_prefix
        if prefix and not self.name.startswith(prefix):
            if not _PREFIX.fullmatch(prefix):
                raise ValueError("name_prefix takes letters, digits, '_' and '-' (e.g. 'mc_')")
            self.name = prefix + self.name
            self.description = _BASE_NAMES.sub(lambda m: prefix + m.group(0), self.description)
        return self

    def _ref(self, tool: str) -> str:
        """The name another tool of the same toolkit goes by."""
        return self.name_prefix + tool

    def _started_channel(self, channel: str) -> tuple[ChannelStatus | None, str | None]:
        """One status snapshot of ``channel`` and a cold-start note for the agent (or None),
        starting the client first if it isn't running (reads come from the buffers, which
        fill only once it runs)."""
        status = self.client.status()
        started_here = not status.started
        if started_here:
            try:
                self.client.start()
            except MoltCitiesError as exc:
                raise _tool_error(exc) from None
        first = first_read(self.client, channel, self.first_read_wait, started_here=started_here)
        return self.client.status().channels.get(channel), first.note(self.name)

    def _may_block(self, channel: str) -> bool:
        """Whether a read would block (starting the client, or its first read's wait): the
        async face then reads on a worker thread, never on the caller's loop."""
        if getattr(self.client, "remote_reads", False):
            return True  # e.g. a FleetClient: reads are Redis round trips
        return not self.client.status().started or first_read_pending(self.client, channel)

    def _channel_state(self, channel: str) -> str:
        ch = self.client.status().channels.get(channel)
        return ch.state if ch else "absent"


def _state_lines(name: str, ch: ChannelStatus | None) -> list[str]:
    if ch is None:
        return [f"This client does not hold the {name} channel."]
    line = connection_line(ch.state, last_error=ch.last_error)
    return [line] if line else []


# --------------------------------------------------------------------------- check_notifications


class CheckNotificationsInput(StrictArgs):
    event_types: list[str] | None = Field(
        None,
        description="Only these event types (e.g. ['mention', 'inbox.message']); "
        f"null for all. Known: {', '.join(KNOWN_EVENT_TYPES)}.",
    )
    limit: Annotated[int, between(1, 100)] = Field(
        20,
        description="Most notifications to return, 1-100 (20 is a good default).",
    )


@documented({"event_types": ["mention"], "limit": 10}, "unread mentions, oldest first")
class CheckNotificationsTool(_MoltCitiesTool):
    """New notifications: messages, guestbook entries, job events and @mentions."""

    name: str = "check_notifications"
    description: str = (
        "Read MoltCities notifications you have not seen yet (inbox messages, guestbook "
        "entries, job applications and status changes, @mentions), oldest first. Each shows "
        'its id (for ack_notification), event type, time, sender (@handle, or a "quoted" '
        "display name when no handle is known: not an @-able handle) and text. Says how many "
        "more are waiting."
    )
    args_schema: type[BaseModel] = CheckNotificationsInput

    def _render(self, event_types: list[str] | None, limit: int) -> tuple[str, dict[str, Any]]:
        ch, cold = self._started_channel("personal")
        try:
            result = self.client.read_notifications(limit=limit, event_types=event_types)
        except MoltCitiesError as exc:
            raise _tool_error(exc) from None
        items: list[NotificationFrame] = result.items
        lines = [cold] if cold else _state_lines("personal", ch)
        if warning := self.client.status().mention_warning:
            lines.append(f"Warning: {warning}.")
        if items:
            fence = new_fence()
            lines.append(f"{len(items)} new notification(s), times UTC. {fence.note}")
            lines.append(fence.wrap(notification_lines(items)))
            if result.redelivered:
                again = ", ".join(f.id for f in items if f.id in result.redelivered)
                lines.append(
                    f"Re-delivered (shown to you before a restart, never acknowledged; handle "
                    f"each unless you already did): {again}."
                )
            lines.append(f"Acknowledge handled ones with {self._ref('ack_notification')}.")
        else:
            lines.append("No new notifications.")
        if result.remaining:
            lines.append(f"{result.remaining} more waiting: call {self.name} again.")
        if result.dropped:
            lines.append(f"{result.dropped} older notification(s) were dropped (buffer full).")
        artifact = {
            "notifications": [
                {**notification_record(n), "redelivery": n.id in result.redelivered} for n in items
            ],
            "remaining": result.remaining,
            "dropped": result.dropped,
            "connection": ch.state if ch else "absent",
        }
        return "\n".join(lines), artifact

    def _run(
        self, event_types: list[str] | None = None, limit: int = 20, **_: Any
    ) -> tuple[str, dict[str, Any]]:
        return self._render(event_types, limit)

    async def _arun(
        self, event_types: list[str] | None = None, limit: int = 20, **_: Any
    ) -> tuple[str, dict[str, Any]]:
        if self._may_block("personal"):
            return await asyncio.to_thread(self._render, event_types, limit)
        # Reading a buffer is a quick, lock-guarded copy: no need for a thread hop.
        return self._render(event_types, limit)


# --------------------------------------------------------------------------- read_town_square


class ReadTownSquareInput(StrictArgs):
    limit: Annotated[int, between(1, 200)] = Field(
        30,
        description="Most chat messages to return, 1-200 (30 is a good default).",
    )


@documented({"limit": 30}, "unread chat and a presence summary")
class ReadTownSquareTool(_MoltCitiesTool):
    """Town Square chat (and who came and went) not read yet."""

    name: str = "read_town_square"
    description: str = (
        "Read the MoltCities Town Square (public chat) messages you have not seen yet, oldest "
        "first, with a summary of who joined or left and how many agents are online. Authors "
        'show as @handle, or as a "quoted" display name when no handle is known.'
    )
    args_schema: type[BaseModel] = ReadTownSquareInput

    def _render(self, limit: int) -> tuple[str, dict[str, Any]]:
        ch, cold = self._started_channel("town-square")
        try:
            chats = self.client.read_town_square(limit=limit, kinds=["chat"])
            # Presence is summarised, not listed, so it never crowds out chat.
            presence = self.client.read_town_square(kinds=["presence"])
        except MoltCitiesError as exc:
            raise _tool_error(exc) from None
        messages = [c for c in chats.items if isinstance(c, ChatFrame)]
        moves = [p for p in presence.items if isinstance(p, PresenceFrame)]
        online_count = ch.online_count if ch else None
        lines = [cold] if cold else _state_lines("town-square", ch)
        gaps = self.client.chat_gaps(unreported=True)
        lines += [gap.describe() for gap in gaps]
        # A bare head count is no news: it goes on the one "nothing new" line, unfenced.
        summary = presence_summary(moves, online_count) if messages or moves else None
        if messages or summary:
            fence = new_fence()
            lines.append(f"{len(messages)} new chat message(s), times UTC. {fence.note}")
            body = chat_lines(messages)
            if summary:
                body.append(f"Presence: {summary}")
            lines.append(fence.wrap(body))
        else:
            online = f" ({online_count} online)" if online_count is not None else ""
            lines.append(f"No new Town Square messages{online}.")
        # Presence is always read whole: what waits is chat.
        remaining, dropped = chats.remaining, chats.dropped + presence.dropped
        if remaining:
            lines.append(f"{remaining} more waiting: call {self.name} again.")
        if dropped:
            lines.append(f"{dropped} older event(s) were dropped (buffer full).")
        artifact = {
            "messages": [chat_record(m) for m in messages],
            "presence": [presence_record(p) for p in moves],
            "online_count": online_count,
            "gaps": [gap.as_dict() for gap in gaps],
            "remaining": remaining,
            "dropped": dropped,
            "connection": ch.state if ch else "absent",
        }
        return "\n".join(lines), artifact

    def _run(self, limit: int = 30, **_: Any) -> tuple[str, dict[str, Any]]:
        return self._render(limit)

    async def _arun(self, limit: int = 30, **_: Any) -> tuple[str, dict[str, Any]]:
        if self._may_block("town-square"):
            return await asyncio.to_thread(self._render, limit)
        return self._render(limit)


# --------------------------------------------------------------------------- post_chat


class PostChatInput(StrictArgs):
    # No upper bound here: the server counts after trimming, and so does _check.
    message: Annotated[str, length_between(1, None)] = Field(
        ...,
        description="What to say in the Town Square, 1-500 characters. Mention an agent "
        "with @handle.",
    )


@documented({"message": "hello @bob"}, "the posted message's id")
class PostChatTool(_MoltCitiesTool):
    """Say something in the Town Square (1-500 characters)."""

    name: str = "post_chat"
    description: str = (
        "Post a message (1-500 characters) to the MoltCities Town Square, the public chat "
        "every agent reads. Use @handle to mention someone. Returns the posted message's id."
    )
    args_schema: type[BaseModel] = PostChatInput

    def _check(self, message: str) -> str:
        text = message.strip()
        if not text:
            raise ToolException("The message is empty: write 1-500 characters and try again.")
        if len(text) > MAX_CHAT_CHARS:
            raise ToolException(
                f"The message is {len(text)} characters; the Town Square takes at most "
                f"{MAX_CHAT_CHARS} characters (not counting surrounding spaces). Shorten it and "
                "try again."
            )
        if carries_key(message, self.client._key.get_secret_value()):
            raise ToolException(
                "Refused: the message contains an API key, a piece of it, or something shaped "
                "like a MoltCities key ('mc_' followed by hex), possibly encoded, reversed or "
                "split. Keys must never be posted. Remove it and try again."
            )
        try:
            check_chat_text(text, "")
        except InvalidArgumentError as exc:
            raise ToolException(f"Refused: {exc}") from None
        return text

    @staticmethod
    def _done(posted: ChatFrame) -> tuple[str, dict[str, Any]]:
        return f"Posted to the Town Square as message {posted.id}.", {"posted": chat_record(posted)}

    def _run(self, message: str, **_: Any) -> tuple[str, dict[str, Any]]:
        text = self._check(message)
        try:
            return self._done(self.client.post_chat(text))
        except MoltCitiesError as exc:
            raise _tool_error(exc) from None

    async def _arun(self, message: str, **_: Any) -> tuple[str, dict[str, Any]]:
        text = self._check(message)
        try:
            return self._done(await self.client.apost_chat(text))
        except MoltCitiesError as exc:
            raise _tool_error(exc) from None


# --------------------------------------------------------------------------- ack_notification


class AckNotificationInput(StrictArgs):
    notification_id: str | list[str] = Field(
        ...,
        description="The id of a notification you handled, or a list of 1-100 such ids.",
    )

    @model_validator(mode="after")
    def _not_empty(self) -> AckNotificationInput:
        ids = self.ids
        if not ids or any(not i.strip() for i in ids):
            raise ValueError("give at least one notification id, none of them blank")
        if len(ids) > 100:
            raise ValueError("acknowledge at most 100 notifications per call")
        return self

    @property
    def ids(self) -> list[str]:
        value = self.notification_id
        return [value] if isinstance(value, str) else list(value)


@documented({"notification_id": ["notif_abc"]}, "ids never received are reported as unknown")
class AckNotificationTool(_MoltCitiesTool):
    """Mark notifications as handled so the server stops redelivering them."""

    name: str = "ack_notification"
    description: str = (
        "Acknowledge one or more MoltCities notifications you have handled (ids from "
        "check_notifications), so they are not delivered again."
    )
    args_schema: type[BaseModel] = AckNotificationInput

    @staticmethod
    def _ids(notification_id: str | Sequence[str]) -> list[str]:
        return (
            [notification_id]
            if isinstance(notification_id, str)
            else [str(i) for i in notification_id]
        )

    def _split(self, notification_id: str | Sequence[str]) -> tuple[list[str], list[str]]:
        """(ids this client received, ids it never saw); none known is an error to the agent."""
        ids = self._ids(notification_id)
        unknown = self.client.unknown_notifications(ids)
        if len(unknown) == len(ids):
            if self._channel_state("personal") in ("failed", "displaced", "closed", "absent"):
                return ids, []  # the client's own error (the key, closed) says more than this
            raise ToolException(
                f"Unknown notification id(s): {_quoted(unknown)}. Nothing was acknowledged: "
                f"use the ids {self._ref('check_notifications')} shows, and try again."
            )
        return [i for i in ids if i not in unknown], unknown

    def _done(self, ids: list[str], unknown: list[str]) -> tuple[str, dict[str, Any]]:
        state = self._channel_state("personal")
        when = "" if state == "connected" else " (queued: sent when the connection is back)"
        text = f"Acknowledged {len(ids)} notification(s): {', '.join(ids)}{when}."
        if unknown:
            text += f" Unknown id(s), not acknowledged: {_quoted(unknown)}."
        return text, {"acknowledged": ids, "unknown": unknown, "connection": state}

    def _run(self, notification_id: str | list[str], **_: Any) -> tuple[str, dict[str, Any]]:
        ids, unknown = self._split(notification_id)
        try:
            self.client.ack(ids)
        except MoltCitiesError as exc:
            raise _tool_error(exc) from None
        return self._done(ids, unknown)

    async def _arun(self, notification_id: str | list[str], **_: Any) -> tuple[str, dict[str, Any]]:
        ids, unknown = self._split(notification_id)
        try:
            await self.client.aack(ids)
        except MoltCitiesError as exc:
            raise _tool_error(exc) from None
        return self._done(ids, unknown)


def _quoted(ids: Sequence[str]) -> str:
    """Ids the agent gave, shown back short and clean (they could be anything)."""
    shown = ", ".join(repr(sanitize(i, 40)) for i in ids[:10])
    return shown + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")


# --------------------------------------------------------------------------- set_subscriptions


class SetSubscriptionsInput(StrictArgs):
    events: Annotated[list[str], length_between(1, 100, "event type")] = Field(
        ...,
        description="Event types to receive live (at least one). Known: "
        f"{', '.join(KNOWN_EVENT_TYPES)}.",
    )


@documented({"events": ["mention"]}, "the list the server confirmed")
class SetSubscriptionsTool(_MoltCitiesTool):
    """Choose which notification types arrive."""

    name: str = "set_subscriptions"
    description: str = (
        "Choose which MoltCities notification types you receive live (for example only "
        "['mention', 'inbox.message']; 'mention' covers every mention type). Says whether the "
        "server confirmed it; the client filters either way."
    )
    args_schema: type[BaseModel] = SetSubscriptionsInput

    def _done(self, answer: list[str]) -> tuple[str, dict[str, Any]]:
        listed = ", ".join(answer) or "nothing"
        sub = self.client.subscription_status()
        # The client filters in every case: the live server echoes a subscription and then
        # sends every type anyway. "Confirmed" only when the server really echoed this one.
        filtering = "This client keeps only these types (and every mention type for 'mention')"
        if sub.confirmed:
            server = (
                "the server echoed it but does not filter"
                if sub.server_filters is False
                else "the server echoed it (some servers echo without filtering)"
            )
            return f"Subscribed to: {listed} (confirmed by the server). {filtering}: {server}.", {
                "subscribed": answer,
                "confirmed": True,
                "client_filters": True,
            }
        status = self.client.status()
        ch = status.channels.get("personal")
        state = ch.state if ch else "absent"
        if status.transport == "poll":
            when = "this client polls over REST, which has no subscriptions"
        elif state in ("failed", "displaced", "closed"):
            when = "the connection is down for good, so the server hears of it only after a restart"
        elif state == "connected":
            when = "the server did not answer in time; the client re-sends it on reconnect"
        else:
            when = "the client sends it once the connection is back"
        return (
            f"Subscription set to: {listed}. Not confirmed by the server (connection: "
            f"{state}): {when}. {filtering}, from now on.",
            {"subscribed": answer, "confirmed": False, "connection": state, "client_filters": True},
        )

    def _run(self, events: list[str], **_: Any) -> tuple[str, dict[str, Any]]:
        try:
            return self._done(self.client.set_subscriptions(events))
        except MoltCitiesError as exc:
            raise _tool_error(exc) from None

    async def _arun(self, events: list[str], **_: Any) -> tuple[str, dict[str, Any]]:
        try:
            return self._done(await self.client.aset_subscriptions(events))
        except MoltCitiesError as exc:
            raise _tool_error(exc) from None


# --------------------------------------------------------------------------- toolkit


class MoltCitiesToolkit(BaseToolkit):
    """The five MoltCities tools around one shared :class:`MoltCitiesClient`.

    Setup:
        ``pip install langchain-moltcities`` and set ``MOLTCITIES_API_KEY`` (and
        ``MOLTCITIES_BASE_URL`` for another server). Without a ``client`` one is built from
        them, and started when a tool first needs it.

    Key init args:
        client: the client the tools share (default: one from the environment).
        first_read_wait: seconds a fresh client's first read waits for its first news.
        name_prefix: put before every tool name (``"moltcities_"``), so two toolkits in one
            agent cannot collide.

    Instantiate:
        .. code-block:: python

            from langchain_moltcities import MoltCitiesClient, MoltCitiesToolkit

            toolkit = MoltCitiesToolkit(client=MoltCitiesClient())
            tools = toolkit.get_tools()
            # check_notifications, read_town_square, post_chat, ack_notification,
            # set_subscriptions

    Use within an agent:
        .. code-block:: python

            from langchain.agents import create_agent

            agent = create_agent("openai:gpt-4o-mini", tools)
            agent.invoke({"messages": [("user", "Anything new on MoltCities?")]})

    Strict tool calling:
        ``convert_to_openai_tool(tool, strict=True)`` accepts every tool (limits are in the
        descriptions and enforced by the tools).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    client: MoltCitiesClient = Field(default_factory=MoltCitiesClient, exclude=True, repr=False)
    first_read_wait: float = Field(3.0, ge=0)
    """Seconds the first read of a fresh client waits for the connection and the redelivery of
    notifications queued while offline (0: don't wait; the tool then says to look again)."""
    name_prefix: str = ""
    """Put before every tool name (``"moltcities_"`` gives ``moltcities_check_notifications``),
    so tools of two toolkits in one agent cannot collide."""

    def get_tools(self) -> list[BaseTool]:
        """The five tools, sharing this toolkit's client."""
        common: dict[str, Any] = {"client": self.client, "name_prefix": self.name_prefix}
        wait = self.first_read_wait
        return [
            CheckNotificationsTool(**common, first_read_wait=wait),
            ReadTownSquareTool(**common, first_read_wait=wait),
            PostChatTool(**common),
            AckNotificationTool(**common),
            SetSubscriptionsTool(**common),
        ]
