"""Invisible characters and fence look-alikes: what :func:`render.sanitize` removes.

Pure. Two jobs:

- :func:`drop_invisible` removes every character a reader can't see: controls (C0, C1),
  format characters (zero-width, bidi overrides, tags), lone surrogates, and every Unicode
  *default-ignorable* code point (combining grapheme joiner U+034F, Hangul fillers U+115F,
  U+3164, U+FFA0, Mongolian and other variation selectors, U+E0000-U+E0FFF...). Line and
  paragraph separators become spaces.
- :func:`defuse_markers` finds anything a reader could take for one of our fence markers,
  ``<untrusted-nonce>`` or ``</untrusted-nonce>``, drawn with look-alikes: the word spelled
  with Cyrillic, Greek, Armenian or small-capital letters, full-width or mathematical forms,
  accents, spaces between letters; the brackets drawn with any bracket-like character
  (guillemets, ``❬❭``, modifier-letter arrowheads, Canadian syllabics, maths relations,
  HTML entities). The comparison runs on a *skeleton* of the text, one folded character per
  original character, so the match is cut out of the original text at the same place and
  everything else is left as written.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["MARKER_REMOVED", "defuse_markers", "drop_invisible", "is_default_ignorable"]

MARKER_REMOVED = "[marker removed]"

# DerivedCoreProperties.txt, Default_Ignorable_Code_Point (Unicode 15.1).
_IGNORABLE_RANGES = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)


def is_default_ignorable(ch: str) -> bool:
    """Whether ``ch`` is a Unicode default-ignorable code point (invisible when shown)."""
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _IGNORABLE_RANGES)


_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})


def drop_invisible(text: str) -> str:
    """``text`` without anything a reader can't see; newlines and tabs kept."""
    out: list[str] = []
    for ch in text:
        if ch in "\n\t":
            out.append(ch)
        elif ch in "\u2028\u2029" or unicodedata.category(ch) == "Cs":
            out.append(" ")
        elif ch.isascii():
            if ch.isprintable():
                out.append(ch)
        elif unicodedata.category(ch) in _INVISIBLE_CATEGORIES or is_default_ignorable(ch):
            continue
        else:
            out.append(ch)
    return "".join(out)


# Letters that look like those of "untrusted" (any case), from Unicode's confusables.
_LOOKALIKES = {
    "u": "υսᴜʋᑌ∪⋃ꞟуУц",
    "n": "ոɴпηռᑎΝⲛИ",
    "t": "тᴛτТΤҭ†ᎢꓔⲦ",
    "r": "гʀᴦꭇⲅᏒꓣ",
    "s": "ѕꜱЅꮪᏚꓢ$",
    "e": "еЕᴇεΕҽꬲᎬꓰ",
    "d": "ԁᴅꓒᎠɗꓓ",
    "<": "ᐸᐊᐅᐳᗕᗒ",
}
_FOLD = {ch: plain for plain, alikes in _LOOKALIKES.items() for ch in alikes}
# Punctuation and symbols a sentence uses around an ordinary word: not bracket-like.
_ORDINARY = frozenset(".,;:!?'\"`/-_*@#&%()")


def _skeleton_char(ch: str) -> str:
    if ch.isascii():
        if ch.isalnum() or ch.isspace() or ch in _ORDINARY:
            return ch.lower()
        return "<"  # < > [ ] { } | \ ~ ^ = + and the rest: bracket-like enough
    if ch in _FOLD:
        return _FOLD[ch]
    base = unicodedata.normalize("NFKD", ch)[:1]
    if base.isascii() and base.isalnum():
        return base.lower()
    if base.isspace() or ch.isspace():
        return " "
    if unicodedata.category(ch)[0] in "PS":
        return "<"  # any other punctuation or symbol counts as a bracket
    return ch


_ENTITY = re.compile(
    r"&(?:lt|gt|lsaquo|rsaquo|laquo|raquo|lang|rang|langle|rangle|#0*6[02]|#x0*3[ce]);?", re.I
)


def _skeleton(text: str) -> str:
    """One folded character per character of ``text`` (same length, same indices)."""
    folded = "".join(_skeleton_char(ch) for ch in text)
    # An HTML entity for a bracket reads as one: a run of brackets of the same length.
    return _ENTITY.sub(lambda m: "<" * len(m.group()), folded)


_GAP = r"[\s._*·-]?"
_WORD = _GAP.join("untrusted")
_WORD_RE = re.compile(_WORD)
_MARKER = re.compile(
    rf"<+\s*/?\s*{_WORD}(?:[\w\s-]{{0,40}}?<+|[\w-]{{0,40}})|/?\s*{_WORD}[\w\s-]{{0,40}}?<+"
)


def defuse_markers(text: str) -> str:
    """``text`` with every fence look-alike replaced by ``[marker removed]``."""
    skeleton = _skeleton(text)
    if not _WORD_RE.search(skeleton):
        return text
    out: list[str] = []
    last = 0
    for m in _MARKER.finditer(skeleton):
        out.append(text[last : m.start()])
        out.append(MARKER_REMOVED)
        last = m.end()
    out.append(text[last:])
    return "".join(out)
