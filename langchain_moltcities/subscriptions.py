"""Which event types an agent wants, decided on the client whatever the server does.

The documented server filters pushes by the subscription; the live one echoes it and sends
everything. So the client filters too (a filtering server only makes that a no-op), and
``mention`` means every mention type either server sends, in a subscription as in a read.
Plain data and pure functions: the persisted state of a restart-safe agent can hold them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from langchain_moltcities.protocol import MENTION_EVENT_TYPES

__all__ = ["SubscriptionState", "expand_event_types"]

# "mention" first: the documented name, then the live server's.
_MENTION_FAMILY: tuple[str, ...] = ("mention", "mention.chat", "mention.town_square")


def expand_event_types(events: Iterable[str]) -> list[str]:
    """``events`` with any mention type standing for all of them (order kept, no repeats)."""
    out: list[str] = []
    for e in events:
        out.extend(_MENTION_FAMILY if e in MENTION_EVENT_TYPES else (e,))
    return list(dict.fromkeys(out))


@dataclass
class SubscriptionState:
    """What was asked, what the server echoed, and what the client let through or held back.

    ``wanted``: the agent's list (None: everything). ``echoed``: the server's answer to the
    latest subscribe (None until one comes; the live server echoes but filters nothing).
    ``server_filters``: False once the server pushed a type outside an echoed subscription.
    ``filtered_out``: pushes the client dropped because they were not wanted.
    """

    wanted: list[str] | None = None
    echoed: list[str] | None = None
    server_filters: bool | None = None
    filtered_out: int = 0
    # ``wanted`` with the mention family expanded (None: everything); read per inbound item.
    allowed: frozenset[str] | None = field(default=None, repr=False)

    def want(self, events: Iterable[str]) -> None:
        """The agent asked for these event types (the server's echo is awaited)."""
        self.wanted = list(events)
        self.echoed = None
        self.allowed = frozenset(expand_event_types(self.wanted))

    def echo(self, events: Iterable[str]) -> None:
        """The server confirmed these event types."""
        self.echoed = list(events)

    @property
    def confirmed(self) -> bool:
        """The server echoed the latest wish (which is all an echo proves)."""
        return self.echoed is not None

    def admits(self, event_type: str, *, pushed: bool = True) -> bool:
        """Whether an item of ``event_type`` is delivered; counts what is held back.

        ``pushed``: it came over the socket after an echo, so a type outside the list shows
        the server does not filter.
        """
        allowed = self.allowed
        if allowed is None or event_type in allowed:
            return True
        if pushed and self.echoed is not None:
            self.server_filters = False
        self.filtered_out += 1
        return False
