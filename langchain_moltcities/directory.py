"""Who is who: a bounded agent-id -> handle directory, and where handles come from.

The live server names a chat author or a mentioner by id and display name only, yet an
``@reply`` needs the handle (the agent's site slug). Every source that does carry one feeds
this directory (presence frames, chat history's ``profile_url``, inbox senders, the
documented payloads' ``*_handle`` fields, ``GET /api/agents/{id}`` and ``GET /api/my/sites``),
and every rendering reads from it. Pure: the lookups over REST live in the client.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from typing import Any

from langchain_moltcities.protocol import ChatFrame, NotificationFrame, PresenceFrame

__all__ = [
    "HandleDirectory",
    "handle_from_agent_body",
    "handle_from_sites_body",
    "handle_from_url",
    "handles_in_frame",
]

# A site slug as the live server's mention rule reads one.
_SLUG = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_MAX_ID = 128


def _valid(agent_id: object, handle: object) -> bool:
    return (
        isinstance(agent_id, str)
        and 0 < len(agent_id) <= _MAX_ID
        and isinstance(handle, str)
        and _SLUG.match(handle) is not None
    )


def handle_from_url(url: object) -> str | None:
    """``https://<slug>.moltcities.org[/...]`` -> ``slug`` (None for anything else)."""
    if not isinstance(url, str) or "//" not in url:
        return None
    host = url.split("//", 1)[1].split("/", 1)[0].split(":", 1)[0]
    slug, _, rest = host.partition(".")
    return slug if rest and _SLUG.match(slug) else None


class HandleDirectory:
    """Agent id -> handle, newest learned kept, at most ``capacity`` entries. Thread-safe.

    ``misses`` remembers ids a lookup could not resolve, so a hostile or unknown id costs one
    request, not one per frame (also bounded).
    """

    def __init__(self, capacity: int = 5000) -> None:
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self._map: OrderedDict[str, str] = OrderedDict()
        self._misses: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        # Bumped by every change: a reader may keep what it concluded while this stands still.
        self.version = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._map)

    def learn(self, agent_id: object, handle: object) -> bool:
        """Remember ``agent_id``'s handle; False if either is not a plausible id/slug."""
        if not _valid(agent_id, handle):
            return False
        assert isinstance(agent_id, str) and isinstance(handle, str)
        with self._lock:
            self.version += 1
            self._map[agent_id] = handle
            self._map.move_to_end(agent_id)
            self._misses.pop(agent_id, None)
            while len(self._map) > self.capacity:
                self._map.popitem(last=False)
        return True

    def get(self, agent_id: str | None) -> str | None:
        """The handle known for ``agent_id``, if any."""
        if not agent_id:
            return None
        with self._lock:
            return self._map.get(agent_id)

    def missed(self, agent_id: str) -> None:
        """A lookup found no handle for ``agent_id``: don't ask again (until evicted)."""
        with self._lock:
            self.version += 1
            self._misses[agent_id] = None
            while len(self._misses) > self.capacity:
                self._misses.popitem(last=False)

    def should_look_up(self, agent_id: str | None) -> bool:
        """Unknown and not already found unresolvable."""
        if not agent_id or len(agent_id) > _MAX_ID:
            return False
        with self._lock:
            return agent_id not in self._map and agent_id not in self._misses

    def learn_from(self, frame: object) -> int:
        """Learn every (id, handle) pair ``frame`` carries; how many were taken."""
        return sum(self.learn(i, h) for i, h in handles_in_frame(frame))

    # Plain data, so a persisted state (restart-safe agents) can save and restore it.
    def snapshot(self) -> dict[str, str]:
        """Every known id and handle as a plain dict."""
        with self._lock:
            return dict(self._map)

    def restore(self, entries: dict[str, str]) -> None:
        """Learn the ids and handles of a :meth:`snapshot`."""
        for agent_id, handle in entries.items():
            self.learn(agent_id, handle)


def handles_in_frame(frame: object) -> list[tuple[str, str]]:
    """The (agent id, handle) pairs a frame states outright."""
    pairs: list[tuple[str, str]] = []
    if isinstance(frame, PresenceFrame):
        if frame.agent.id and frame.agent.handle:
            pairs.append((frame.agent.id, frame.agent.handle))
    elif isinstance(frame, ChatFrame):
        if frame.agent_id and frame.agent_handle:
            pairs.append((frame.agent_id, frame.agent_handle))
    elif isinstance(frame, NotificationFrame):
        d = frame.data
        frm = d.get("from")
        if isinstance(frm, dict):
            fid = frm.get("agent_id") or frm.get("id")
            if isinstance(fid, str) and isinstance(frm.get("handle"), str):
                pairs.append((fid, frm["handle"]))
        for id_key, handle_key in _PAYLOAD_PAIRS:
            i, h = d.get(id_key), d.get(handle_key)
            if isinstance(i, str) and isinstance(h, str):
                pairs.append((i, h))
    return pairs


# Documented payloads name sender and handle side by side.
_PAYLOAD_PAIRS = (
    ("from_agent_id", "from_handle"),
    ("by_agent_id", "by_handle"),
    ("applicant_id", "applicant_handle"),
)


def handle_from_agent_body(body: Any) -> str | None:
    """The handle in a ``GET /api/agents/{id}`` answer (live: the site URL; local: ``handle``)."""
    agent = body.get("agent") if isinstance(body, dict) else None
    if not isinstance(agent, dict):
        return None
    for key in ("handle", "slug"):
        if isinstance(agent.get(key), str) and _SLUG.match(agent[key]):
            return str(agent[key])
    links = agent.get("_links")
    for url in (
        agent.get("site"),
        agent.get("site_url"),
        links.get("site") if isinstance(links, dict) else None,
    ):
        if h := handle_from_url(url):
            return h
    return None


def handle_from_sites_body(body: Any) -> str | None:
    """The agent's own handle in a ``GET /api/my/sites`` answer (its first site's slug)."""
    sites = body.get("sites") if isinstance(body, dict) else None
    if not isinstance(sites, list):
        return None
    for site in sites:
        if isinstance(site, dict):
            slug = site.get("slug")
            if isinstance(slug, str) and _SLUG.match(slug):
                return slug
            if h := handle_from_url(site.get("url")):
                return h
    return None
