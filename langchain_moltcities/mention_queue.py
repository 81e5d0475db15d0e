"""Bounds on mentions waiting for a turn, and on what one turn's prompt holds. Pure.

A flood (60 accounts posting ``@agent`` during one turn; 100,000 pending mentions) must not
become a 24M-character prompt or hundreds of MB in memory. :class:`PendingMentions` holds at
most ``max_count`` mentions and ``max_chars`` characters of their text; past either bound it
evicts from the author holding the most (one flooder can't crowd out a newcomer), and says
what it evicted so the caller counts it. :meth:`PendingMentions.take` hands out at most
``max_batch`` mentions, one per author in turn, oldest first; the rest wait for the next turn.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Generic, Protocol, TypeVar

__all__ = ["PendingMentions", "QueuedMention", "mention_chars", "summarise_left_out"]


class QueuedMention(Protocol):
    """What the queue needs of a mention (``mentions.Mention`` has it)."""

    @property
    def author(self) -> str:
        """Who wrote it (the queue is fair per author)."""
        ...

    @property
    def received_at(self) -> float:
        """When it arrived (clock seconds)."""
        ...

    @property
    def chars(self) -> int:
        """Roughly its size in characters."""
        ...


M = TypeVar("M", bound=QueuedMention)


def mention_chars(*texts: str | None) -> int:
    """Memory-ish size of a mention: its texts plus a fixed overhead."""
    return 64 + sum(len(t) for t in texts if t)


class PendingMentions(Generic[M]):
    """Mentions waiting for a turn, bounded in count and characters."""

    def __init__(self, max_count: int = 100, max_chars: int = 200_000) -> None:
        if max_count < 1 or max_chars < 1:
            raise ValueError("max_pending and max_pending_chars must be >= 1")
        self.max_count, self.max_chars = max_count, max_chars
        self._items: list[M] = []
        self.chars = 0

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[M]:
        return iter(list(self._items))

    def add(self, mention: M) -> list[M]:
        """Queue ``mention``; the mentions evicted to stay in bounds (maybe ``mention``)."""
        self._items.append(mention)
        self.chars += mention.chars
        evicted: list[M] = []
        while len(self._items) > self.max_count or (
            self.chars > self.max_chars and len(self._items) > 1
        ):
            victim = self._victim(mention)
            self._remove(victim)
            evicted.append(victim)
            if victim is mention:
                break
        if self.chars > self.max_chars and self._items == [mention]:
            # One mention alone over the budget: it can't be kept whole.
            self._remove(mention)
            evicted.append(mention)
        return evicted

    def _victim(self, newcomer: M) -> M:
        counts = Counter(m.author for m in self._items)
        top, most = counts.most_common(1)[0]
        if counts[newcomer.author] >= most:
            return newcomer  # the newcomer's author already holds the most: it goes
        # The newest mention of the author holding the most.
        return next(m for m in reversed(self._items) if m.author == top)

    def _remove(self, mention: M) -> None:
        self._items.remove(mention)
        self.chars -= mention.chars

    def expire(self, now: float, max_wait: float) -> list[M]:
        """Remove and return mentions that waited longer than ``max_wait`` seconds."""
        old = [m for m in self._items if now - m.received_at > max_wait]
        for m in old:
            self._remove(m)
        return old

    def take(self, max_batch: int) -> list[M]:
        """Up to ``max_batch`` mentions, one per author per round, oldest first."""
        chosen: list[M] = []
        remaining = list(self._items)
        while remaining and len(chosen) < max_batch:
            seen: set[str] = set()
            rest: list[M] = []
            for m in remaining:
                if m.author not in seen and len(chosen) < max_batch:
                    seen.add(m.author)
                    chosen.append(m)
                else:
                    rest.append(m)
            remaining = rest
        for m in chosen:
            self._remove(m)
        chosen.sort(key=lambda m: m.received_at)
        return chosen

    def remove_all(self, mentions: Sequence[M]) -> None:
        """Take these mentions out of the queue (those not in it are ignored)."""
        for m in mentions:
            if m in self._items:
                self._remove(m)


def summarise_left_out(count: int, authors: Sequence[str], shown: int = 5) -> str:
    """``12 more mention(s) from @a, @b and 3 others not shown`` (authors already rendered)."""
    unique = list(dict.fromkeys(authors))
    names = ", ".join(unique[:shown])
    more = f" and {len(unique) - shown} other(s)" if len(unique) > shown else ""
    return f"{count} more mention(s) from {names}{more} not shown here (bounded prompt)"
