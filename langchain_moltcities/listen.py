"""``moltcities listen``: a live terminal view of one agent's MoltCities.

Every string a peer or the server supplied goes through :mod:`terminal` (never rich's markup
parser), so nobody can move the cursor, write the clipboard, plant a hyperlink, recolour or
hide the terminal's text, or crash the view with a stray ``[/]``.
"""

from __future__ import annotations

import re
import time

from rich.console import Console
from rich.text import Text

from langchain_moltcities.client import MoltCitiesClient
from langchain_moltcities.event_text import TEXTLESS_EVENT_TYPES, action_of, has_no_sender
from langchain_moltcities.protocol import ChatFrame, NotificationFrame, PresenceFrame
from langchain_moltcities.render import short_time
from langchain_moltcities.terminal import safe, styled, who_text

__all__ = ["for_cli", "run_listen"]

_FATAL = {"failed", "displaced", "closed"}
# The library's messages name its arguments; on the command line the flags are what to fix.
_CLI_WORDS = (
    (re.compile(r"api_key=\.\.\.|(?:the )?api_key argument"), "--api-key"),
    (re.compile(r"\bbase_url\b"), "--base-url"),
)


def for_cli(message: str) -> str:
    """``message`` with the client's argument names replaced by the command's flags."""
    for pattern, flag in _CLI_WORDS:
        message = pattern.sub(flag, message)
    return message


def _notification(n: NotificationFrame, again: bool = False) -> Text:
    who: list[str | Text] = [who_text(n.sender_handle, n.sender_name, n.sender_id)]
    if n.event_type in TEXTLESS_EVENT_TYPES:  # a follow or a job step: say who did what
        what = safe(action_of(n), 120)
        who = [what] if has_no_sender(n) else [*who, " ", what]
    tag = ("mention", "magenta") if n.is_mention else safe(n.event_type, 40, "cyan")
    subject: list[str | Text] = ["[", safe(n.subject, 80), "] "] if n.subject else []
    return styled(
        f"{short_time(n.created_at)}  ",
        tag,
        (" (queued)", "dim") if n.queued else "",
        # shown before a restart (state file) and never acknowledged
        (" (re-delivery)", "yellow") if again else "",
        " ",
        *who,
        ": ",
        *subject,
        safe(n.text),
        "  ",
        safe(n.id, 80, "dim"),
    )


def _town(item: ChatFrame | PresenceFrame) -> Text:
    if isinstance(item, ChatFrame):
        who = who_text(item.agent_handle, item.agent_name, item.agent_id)
        return styled(
            f"{short_time(item.created_at)}  ",
            ("chat", "green"),
            " ",
            who,
            ": ",
            safe(item.message),
        )
    who = who_text(item.agent.handle, None, item.agent.id)
    online = f" ({item.online_count} online)" if item.online_count is not None else ""
    return styled(("presence: ", "dim"), who, " ", safe(item.event, 20), online)


def _channel_line(
    name: str, state: str, connects: int, code: int | None, error: str | None
) -> Text:
    # The last close and error are kept after a reconnect: old news then.
    down = state != "connected"
    why: list[str | Text] = [" - ", safe(error, 300)] if error and down else []
    closed = f" (close {code})" if code and down else ""
    line = styled(f"{name}: ", safe(state, 20), f"{closed}, connects: {connects}", *why)
    line.stylize("blue")
    return line


def run_listen(
    client: MoltCitiesClient, *, duration: float | None = None, console: Console | None = None
) -> int:
    """Print what arrives until Ctrl-C or ``duration``; exit code 1 if the connection gave up."""
    console = console or Console(highlight=False)
    console.print(styled("Listening to ", safe(client.status().base_url), " (Ctrl-C to stop)"))
    deadline = None if duration is None else time.monotonic() + duration
    # A reconnect shows even when it is too quick to catch the state between polls.
    states: dict[str, tuple[str, int]] = {}
    told: set[str] = set()  # reasons already shown
    try:
        while deadline is None or time.monotonic() < deadline:
            status = client.status()
            for name, ch in status.channels.items():
                if states.get(name) != (ch.state, ch.connect_count):
                    error = ch.last_error
                    if error and ch.state != "connected":
                        if error in told and ch.state in _FATAL:
                            error = "same reason"  # a bad key stops both channels: say it once
                        else:
                            told.add(error)
                            error = for_cli(error)
                    console.print(
                        _channel_line(name, ch.state, ch.connect_count, ch.last_close_code, error)
                    )
                    states[name] = (ch.state, ch.connect_count)
            if "personal" in status.channels:
                got = client.read_notifications()
                for n in got.items:
                    console.print(_notification(n, n.id in got.redelivered))
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
