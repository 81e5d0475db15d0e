"""Terminal-safe text: what ``moltcities listen``, the demo and the CLI may print.

Pure. A string from a peer or a server (a subject, an id, an event type, an error body) must
neither drive the terminal (escape sequences: OSC 52 clipboard writes, cursor moves, OSC 8
hyperlinks, colours) nor drive rich (``[link=...]``, ``[conceal]``, a stray ``[/]`` that raises
``MarkupError``). So outside text never goes through rich's markup parser: it becomes a
:class:`rich.text.Text` whose styles are ours, after :func:`render.sanitize` removed every
control, escape, bidi and invisible character.
"""

from __future__ import annotations

from rich.text import Text

from langchain_moltcities.render import sanitize, who

__all__ = ["plain", "safe", "styled", "who_text"]


def plain(value: object, max_chars: int | None = 300) -> str:
    """One clean line of outside text, no control sequences; still plain ``str``.

    For ``typer.echo`` and other outputs that don't parse markup.
    """
    return sanitize("" if value is None else str(value), max_chars)


def safe(value: object, max_chars: int | None = 300, style: str = "") -> Text:
    """Outside text as a rich ``Text``: printed literally, never parsed as markup."""
    return Text(plain(value, max_chars), style=style)


def styled(*parts: str | Text | tuple[str, str]) -> Text:
    """Join our own styled pieces and outside ``Text`` pieces into one line.

    ``str`` parts and ``(text, style)`` tuples are OUR literals (never outside text): pass
    anything a peer or server wrote through :func:`safe` first.
    """
    return Text.assemble(*parts)


def who_text(handle: str | None, name: str | None, agent_id: str | None = None) -> Text:
    """The author as the LLM sees it (a verified handle, or a name marked as a name)."""
    return Text(who(handle, name, agent_id))
