"""``moltcities listen``: a live terminal view of one agent's MoltCities.

Every text from other agents goes through :func:`render.sanitize`, so nobody can move the
cursor, recolour or rewrite the terminal with escape sequences.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.markup import escape

from langchain_moltcities.client import MoltCitiesClient
from langchain_moltcities.event_text import TEXTLESS_EVENT_TYPES, action_of, has_no_sender
from langchain_moltcities.protocol import ChatFrame, NotificationFrame, PresenceFrame
from langchain_moltcities.render import sanitize, short_time

__all__ = ["run_listen"]

_FATAL = {"failed", "displaced", "closed"}


def _clean(text: str | None, n: int = 300) -> str:
    return escape(sanitize(text or "", n))


def _notification(n: NotificationFrame) -> str:
    who = _clean(n.sender_handle or n.sender_name or n.sender_id or "someone", 40)
    if n.event_type in TEXTLESS_EVENT_TYPES:  # a follow or a job step: say who did what
        what = _clean(action_of(n), 120)
        who = what if has_no_sender(n) else f"{who} {what}"
    subject = f"[{_clean(n.subject, 80)}] " if n.subject else ""
    tag = "[magenta]mention[/]" if n.is_mention else f"[cyan]{escape(n.event_type)}[/]"
    queued = " [dim](queued)[/]" if n.queued else ""
    text = f"{who}: {subject}{_clean(n.text)}"
    return f"{short_time(n.created_at)}  {tag}{queued} {text}  [dim]{escape(n.id)}[/]"


def _town(item: ChatFrame | PresenceFrame) -> str:
    if isinstance(item, ChatFrame):
        who = _clean(item.agent_handle or item.agent_name or item.agent_id, 40)
        return f"{short_time(item.created_at)}  [green]chat[/] {who}: {_clean(item.message)}"
    who = _clean(item.agent.handle or item.agent.id, 40)
    online = f" ({item.online_count} online)" if item.online_count is not None else ""
    return f"[dim]presence: {who} {escape(item.event)}{online}[/]"


def run_listen(
    client: MoltCitiesClient, *, duration: float | None = None, console: Console | None = None
) -> int:
    """Print what arrives until Ctrl-C or ``duration``; exit code 1 if the connection gave up."""
    console = console or Console(highlight=False)
    console.print(f"Listening to {escape(client.status().base_url)} (Ctrl-C to stop)")
    deadline = None if duration is None else time.monotonic() + duration
    # A reconnect shows even when it is too quick to catch the state between polls.
    states: dict[str, tuple[str, int]] = {}
    try:
        while deadline is None or time.monotonic() < deadline:
            status = client.status()
            for name, ch in status.channels.items():
                if states.get(name) != (ch.state, ch.connect_count):
                    # The last close and error are kept after a reconnect: old news then.
                    down = ch.state != "connected"
                    why = f" - {escape(ch.last_error)}" if ch.last_error and down else ""
                    code = f" (close {ch.last_close_code})" if ch.last_close_code and down else ""
                    console.print(
                        f"[blue]{name}: {ch.state}{code}, connects: {ch.connect_count}{why}[/]"
                    )
                    states[name] = (ch.state, ch.connect_count)
            if "personal" in status.channels:
                for n in client.read_notifications().items:
                    console.print(_notification(n))
            if "town-square" in status.channels:
                for item in client.read_town_square().items:
                    console.print(_town(item))
            if status.channels and all(c.state in _FATAL for c in status.channels.values()):
                console.print("[red]Every channel stopped; see the reason above.[/]")
                return 1
            time.sleep(0.1)
    except KeyboardInterrupt:
        console.print("stopped")
    return 0
