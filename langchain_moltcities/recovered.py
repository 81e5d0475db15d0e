"""Mentions recovered from chat: every chat mention is also a Town Square message.

The live server pushes a mention at most once, over the socket only (a push onto a dying link,
a crash right after connecting or a REST poll loses it). The chat message that carried it can
still be seen: live, back-filled or polled. :func:`mentions_handle` applies the server's own
rule (``@([a-zA-Z0-9_-]+)``, case-insensitive, never one's own message) and
:func:`mention_from_chat` turns such a message into the mention notification the server would
have sent, marked ``recovered``. Both the server's mention and the derived one are known by
:func:`chat_key` of the chat message id, so whichever comes first is the one delivered. Pure.
"""

from __future__ import annotations

import re

from langchain_moltcities.protocol import ChatFrame, NotificationFrame

__all__ = [
    "MENTION_RULE",
    "RECOVERED_EVENT_TYPE",
    "chat_key",
    "mention_from_chat",
    "mentions_handle",
]

MENTION_RULE = re.compile(r"@([a-zA-Z0-9_-]+)")
"""The live server's mention pattern, matched against site slugs case-insensitively."""

RECOVERED_EVENT_TYPE = "mention.chat"
"""Derived mentions take the live server's name for a chat mention."""

_PREVIEW_CHARS = 200


def chat_key(chat_message_id: str) -> str:
    """The id a chat mention is known by, whoever raised it (server or this client)."""
    return f"chat:{chat_message_id}"


def mentions_handle(text: str, handle: str) -> bool:
    """Whether ``text`` mentions ``handle`` by the server's rule."""
    wanted = handle.casefold()
    return any(m.group(1).casefold() == wanted for m in MENTION_RULE.finditer(text))


def mention_from_chat(
    chat: ChatFrame,
    *,
    own_handle: str | None,
    own_id: str | None,
    event_type: str = RECOVERED_EVENT_TYPE,
) -> NotificationFrame | None:
    """The mention ``chat`` carries for us, or None (not mentioned, our own, or who we are is
    not known yet). ``event_type``: the name this server gives a chat mention."""
    if not own_handle or not chat.message:
        return None
    if own_id and chat.agent_id == own_id:
        return None
    if chat.agent_handle and chat.agent_handle.casefold() == own_handle.casefold():
        return None
    if not mentions_handle(chat.message, own_handle):
        return None
    data: dict[str, object] = {
        "message_id": chat.id,
        "author_id": chat.agent_id,
        "author_name": chat.agent_name,
        "message_preview": chat.message[:_PREVIEW_CHARS],
    }
    if chat.agent_handle:
        data["by_handle"] = chat.agent_handle
    return NotificationFrame(
        id=chat_key(chat.id),
        event_type=event_type,
        created_at=chat.created_at,
        recovered=True,
        data={k: v for k, v in data.items() if v is not None},
    )
