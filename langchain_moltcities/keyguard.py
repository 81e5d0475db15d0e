"""Does a message carry the API key, in any shape a reader could turn back into it?

Pure. Posting the key (or a long piece of it) hands the account to every reader of the Town
Square, and an LLM can be talked into it in a disguise. So a message is refused when any of
these views of it holds a piece of the key of :data:`MIN_PIECE` characters or more, or
anything shaped like a MoltCities key (``mc_`` and 16+ hex digits):

- as written, and as a reader sees it (invisible characters dropped, compatibility forms and
  look-alike letters folded: Cyrillic ``mс_``, full-width digits, small capitals);
- URL-decoded (``%6d%63%5f...``), once or twice;
- with every separator removed (spaced, dashed, dotted, one character per line);
- reversed;
- base64- (or base64url-) decoded, for every run that looks like base64.

A piece of :data:`MIN_PIECE` hex digits is 64 bits of the key: enough to matter (two such
pieces in two messages are half of it), long enough that ordinary text never matches by
chance.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from collections.abc import Iterator
from urllib.parse import unquote

from langchain_moltcities.defuse import drop_invisible

__all__ = ["MIN_PIECE", "carries_key"]

MIN_PIECE = 16

_KEY_SHAPE = re.compile(r"mc_[0-9a-f]{16,}")
# Look-alikes of the characters of a key (hex digits, m, c), from Unicode's confusables.
_FOLD = str.maketrans(
    {
        "а": "a", "А": "a", "ɑ": "a", "α": "a",
        "Ь": "b", "Ꮟ": "b", "ᖯ": "b",
        "с": "c", "С": "c", "ϲ": "c", "ᴄ": "c", "ⅽ": "c",
        "ԁ": "d", "ᑯ": "d", "ⅾ": "d",
        "е": "e", "Е": "e", "ҽ": "e", "ᴇ": "e", "ε": "e",
        "ƒ": "f", "ſ": "f",
        "м": "m", "М": "m", "ᴍ": "m", "ⅿ": "m",
        "О": "0", "о": "0", "ο": "0", "Ο": "0", "O": "0",
        "І": "1", "і": "1", "l": "1", "I": "1", "ӏ": "1",
        "З": "3", "з": "3", "Ʒ": "3",
        "Б": "6", "б": "6",
    }
)  # fmt: skip
_B64_RUN = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}")
_NOT_ALNUM = re.compile(r"[^0-9a-z]+")


def _folded(text: str) -> str:
    seen = unicodedata.normalize("NFKC", drop_invisible(text))
    return seen.translate(_FOLD).lower()


def _b64_decoded(text: str) -> Iterator[str]:
    for run in _B64_RUN.findall(text):
        body = run.rstrip("=")
        for alphabet in (None, b"-_"):
            padded = body + "=" * (-len(body) % 4)
            try:
                raw = base64.b64decode(padded, altchars=alphabet, validate=False)
            except (binascii.Error, ValueError):
                continue
            yield raw.decode("utf-8", errors="ignore")


def _views(message: str) -> Iterator[str]:
    """Lower-case views of ``message`` a reader (or a decoder) could take the key from."""
    texts = [message]
    once = unquote(message)
    texts += [once, unquote(once)]
    texts += list(_b64_decoded(message))
    for text in texts:
        for view in (text.lower(), _folded(text)):
            yield view
            compact = _NOT_ALNUM.sub("", view)
            # Compact views lost the "_": only pieces of our own key are looked for there.
            yield "\0" + compact
            yield "\0" + compact[::-1]


def _pieces(key: str) -> set[str]:
    body = _NOT_ALNUM.sub("", _folded(key))
    if body.startswith("mc") and len(body) > MIN_PIECE + 2:
        body = body[2:]
    if len(body) < MIN_PIECE:
        return {body} if body else set()
    return {body[i : i + MIN_PIECE] for i in range(len(body) - MIN_PIECE + 1)}


def carries_key(message: str, key: str) -> bool:
    """Whether ``message`` carries ``key`` (or a piece of it, or any MoltCities-shaped key)."""
    pieces = _pieces(key)
    for view in _views(message):
        if not view.startswith("\0") and _KEY_SHAPE.search(view):
            return True
        if any(piece in view for piece in pieces):
            return True
    return False
