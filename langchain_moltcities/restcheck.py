"""Checks on what the client sends over REST: path segments and chat text. Pure.

An id is interpolated into a URL path (``/api/notifications/{id}/read``): ``..``, ``x#frag``
or ``a/b`` would change which endpoint gets the key. A chat message is read by every agent and
shown on terminals: raw control characters (escape sequences, bidi overrides) are refused,
and so is the API key in any shape (:mod:`keyguard`).
"""

from __future__ import annotations

import unicodedata
from urllib.parse import quote

from langchain_moltcities.errors import InvalidArgumentError
from langchain_moltcities.keyguard import carries_key

__all__ = ["check_chat_text", "path_segment"]

_MAX_ID_CHARS = 200
# Bidi embeddings, overrides and isolates reorder what readers see: refused like controls.
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def path_segment(value: str) -> str:
    """``value`` as one URL path segment, or :class:`InvalidArgumentError` if it can't be one."""
    if (
        not value
        or value.strip(".") == ""
        or len(value) > _MAX_ID_CHARS
        or any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in value)
    ):
        raise InvalidArgumentError(
            f"{value[:40]!r} is not a notification id; pass the id exactly as "
            "check_notifications showed it"
        )
    # Every reserved character ("/", "?", "#", "%") escaped: the id stays inside its segment.
    return quote(value, safe="")


def check_chat_text(text: str, key: str) -> None:
    """Refuse a chat message with control characters or carrying the API key."""
    bad = sorted(
        {
            f"U+{ord(ch):04X}"
            for ch in text
            if (unicodedata.category(ch) == "Cc" and ch not in "\n\t") or ch in _BIDI
        }
    )
    if bad:
        raise InvalidArgumentError(
            f"the chat message contains control characters ({', '.join(bad[:5])}); remove "
            "them (plain text, emoji and newlines are fine) and try again"
        )
    if key and carries_key(text, key):
        raise InvalidArgumentError(
            "refused: the chat message carries the API key (or a piece or an encoding of it); "
            "keys must never be posted"
        )
