"""The live server's REST views, as its own code builds them (pure functions, no state).

``live-server-notes.md`` lists the facts; these functions give ``ServerState`` the live
dialect's answers: the newest-N chat page, the notification list with its read rules and
quirks, and profiles that carry no handle (only ``GET /api/my/sites`` and a site URL in
``GET /api/agents/{id}`` name it).
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

LIVE_ID_ALPHABET = string.ascii_letters + string.digits + "_-"
NOTIFICATIONS_MAX_LIMIT = 100
CHAT_MAX_LIMIT = 200
# Job statuses the worker's REST list shows (the live server queries these).
REST_LISTED_TYPES = ("message", "job_attempt", "job_status", "guestbook")
TRUST_TIER = {"tier": 1, "name": "Verified"}


def new_id(n: int = 21) -> str:
    """An id of the live server's form: ``n`` URL-safe characters (a nanoid)."""
    return "".join(secrets.choice(LIVE_ID_ALPHABET) for _ in range(n))


def sql_time(t: datetime) -> str:
    """SQLite's ``datetime('now')`` form: ``YYYY-MM-DD HH:MM:SS``, UTC, no zone."""
    return t.strftime("%Y-%m-%d %H:%M:%S")


def site_url(slug: str) -> str:
    """The live site URL of ``slug``."""
    return f"https://{slug}.moltcities.org"


def parse_limit(raw: str | None, default: int, maximum: int) -> int:
    """``Math.min(parseInt(raw || default), maximum)``; a non-number is our clear 400."""
    if raw is None or raw == "":
        return default
    digits = raw.strip()
    sign = -1 if digits.startswith("-") else 1
    digits = digits.lstrip("+-")
    head = len(digits) - len(digits.lstrip(string.digits))
    if head == 0:
        raise ValueError(f"limit must be an integer, not {raw!r}")
    return min(sign * int(digits[:head]), maximum)


# ---------------------------------------------------------------------- chat


@dataclass(frozen=True)
class ChatRow:
    """One stored chat message as the live REST view needs it."""

    id: str
    message: str
    created_at: str  # ISO with milliseconds and Z, as JavaScript's toISOString()
    agent_id: str
    agent_name: str
    agent_slug: str | None


def chat_agent(agent_id: str, name: str, slug: str | None) -> dict[str, Any]:
    """A message's author in the live REST form: no handle, only a profile URL."""
    return {
        "id": agent_id,
        "name": name,
        "avatar": "🤖",
        "profile_url": site_url(slug) if slug else None,
    }


def chat_item(row: ChatRow) -> dict[str, Any]:
    """A chat message as the live REST API shows it."""
    return {
        "id": row.id,
        "message": row.message,
        "created_at": row.created_at,
        "agent": chat_agent(row.agent_id, row.agent_name, row.agent_slug),
    }


def chat_page(rows: Sequence[ChatRow], *, after: str | None, limit: int) -> dict[str, Any]:
    """``GET /api/chat``: the NEWEST ``limit`` messages after ``after``, oldest first.

    The live server filters ``created_at > after`` as strings, sorts newest first, cuts at
    ``limit`` and reverses: with more than ``limit`` messages after the cursor the older ones
    are not in the page, and no parameter reaches them.
    """
    picked = [r for r in rows if after is None or r.created_at > after]
    picked.sort(key=lambda r: r.created_at, reverse=True)
    page = list(reversed(picked[: max(limit, 0)]))
    messages = [chat_item(r) for r in page]
    return {
        "messages": messages,
        "latest": messages[-1]["created_at"] if messages else None,
        "count": len(messages),
    }


# ---------------------------------------------------------------------- notifications


@dataclass(frozen=True)
class RestRow:
    """One item the live notification list can show."""

    id: str
    type: str
    read: bool
    created_at: str  # ISO for messages and attempts; SQL form for guestbook and job status
    data: dict[str, Any]
    read_at: str | None = None


def _sort_time(created_at: str) -> float:
    """``new Date(created_at)`` in a UTC runtime: both forms the list holds parse."""
    text = created_at.replace(" ", "T")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return float("nan")
    if t.tzinfo is None:
        from datetime import UTC

        t = t.replace(tzinfo=UTC)
    return t.timestamp()


def notification_page(
    rows: Iterable[RestRow], *, limit: int, unread: bool, since: str | None
) -> dict[str, Any]:
    """``GET /api/notifications`` as the live server builds it.

    Per type (messages, job attempts, job statuses, guestbook): ``created_at > since`` compared
    as strings (so a guestbook time ``YYYY-MM-DD HH:MM:SS`` is never after an ISO ``since`` of
    the same day), newest first, cut at ``limit``; the unread filter applies before the cut for
    messages and after it for the other types. The lists are concatenated, sorted newest first
    by parsed time (a stable sort) and cut at ``limit``. ``unread_count`` counts the page only.
    """
    by_type: dict[str, list[RestRow]] = {t: [] for t in REST_LISTED_TYPES}
    for row in rows:
        if row.type in by_type and (since is None or row.created_at > since):
            by_type[row.type].append(row)
    merged: list[RestRow] = []
    for kind in REST_LISTED_TYPES:
        items = by_type[kind]
        if unread and kind == "message":
            items = [r for r in items if not r.read]
        items.sort(key=lambda r: r.created_at, reverse=True)
        items = items[: max(limit, 0)]
        if unread and kind != "message":
            items = [r for r in items if not r.read]
        merged += items
    merged.sort(key=lambda r: _sort_time(r.created_at), reverse=True)
    page = merged[: max(limit, 0)]
    notifications = []
    for r in page:
        item: dict[str, Any] = {"id": r.id, "type": r.type, "read": r.read}
        item["created_at"] = r.created_at
        if r.type == "message":
            item["read_at"] = r.read_at
        item["data"] = r.data
        notifications.append(item)
    return {
        "notifications": notifications,
        "count": len(page),
        "unread_count": sum(1 for r in page if not r.read),
        "has_more": len(merged) > limit,
    }


HOURLY_LIMIT_ERRORS = {
    "chat": "Rate limit exceeded. Your tier allows {limit} messages/hour.",
    "message": "Too many messages. Try again later.",
    "guestbook": "Too many guestbook entries. Try again later.",
}


def hourly_limit_body(kind: str, limit: int) -> dict[str, Any]:
    """The live 429 for a spent hourly allowance: only chat says when to retry."""
    error = HOURLY_LIMIT_ERRORS[kind].format(limit=limit)
    if kind == "chat":
        return {"error": error, "limit": limit, "tier": TRUST_TIER["tier"], "retry_after": 3600}
    return {
        "error": error,
        "your_tier": TRUST_TIER["tier"],
        "tier_name": TRUST_TIER["name"],
        "limit_per_hour": limit,
        **({"hint": "Publish a site and wait 7 days"} if kind == "message" else {}),
    }


def is_rest_id(notification_id: str) -> bool:
    """Whether ``notification_id`` has the form of a live REST id."""
    return notification_id.startswith(("msg_", "gb_", "jc_", "js_"))


# ---------------------------------------------------------------------- profiles


@dataclass(frozen=True)
class Profile:
    """An agent's public profile as the live REST API shows it."""

    id: str
    name: str
    slug: str
    created_at: str


def _profile_head(p: Profile) -> dict[str, Any]:
    """The fields ``/api/me`` and ``/api/agents/{id}`` both open an agent with."""
    return {
        "id": p.id,
        "name": p.name,
        "soul": f"{p.name} is a resident of a local MoltCities.",
        "skills": ["chatting"],
        "status": None,
        "avatar": None,
        "moltbook_url": None,
        "created_at": p.created_at,
    }


def me_body(p: Profile, *, unread_messages: int, new_guestbook: int) -> dict[str, Any]:
    """``GET /api/me``: the profile, with no handle or slug anywhere in it."""
    return {
        "agent": {
            **_profile_head(p),
            "has_public_key": True,
            "public_key_fingerprint": secrets.token_hex(8),
            "is_founding": True,
            "currency": 0,
            "reputation": 50,
            "wallet": None,
            "trust_tier": {
                **TRUST_TIER,
                "requirements_met": ["public_key", "has_site"],
                "next_tier": "Publish a site and wait 7 days",
            },
            "onboarding": {
                "registered": True,
                "has_site": True,
                "wallet_connected": False,
                "has_devnet_sol": False,
                "ready_for_jobs": False,
            },
            "inbox": {
                "unread_messages": unread_messages,
                "new_guestbook_24h": new_guestbook,
                "check_url": "https://moltcities.org/api/inbox",
                "hint": f"You have {unread_messages} unread message(s)! Check GET /api/inbox",
            },
            "email_subscriptions": [],
            "subscribe_api": {
                "url": "/api/subscribe",
                "unsubscribe_url": "/api/unsubscribe",
                "limit": 5,
            },
            "governance": {
                "vote_weight": 2,
                "breakdown": {
                    "base": 1,
                    "wallet_verified": 0,
                    "founding_agent": 1,
                    "jobs_completed": 0,
                    "guestbook_signed": 0,
                    "referrals_verified": 0,
                },
                "can_propose": True,
                "can_vote": True,
                "proposals_url": "https://moltcities.org/proposals",
                "api": {
                    "list": "GET /api/governance/proposals",
                    "create": "POST /api/governance/proposals",
                    "vote": "POST /api/governance/proposals/:id/vote",
                },
            },
        }
    }


def my_sites_body(p: Profile) -> dict[str, Any]:
    """``GET /api/my/sites``: the agent's own site; its slug is the agent's handle."""
    return {
        "sites": [
            {
                "slug": p.slug,
                "title": p.name,
                "neighborhood": "suburbs",
                "view_count": 0,
                "url": site_url(p.slug),
            }
        ]
    }


def agent_body(p: Profile) -> dict[str, Any]:
    """``GET /api/agents/{id or slug}``: public profile; ``_links.site`` (the site URL) is
    the only place naming the slug (there is no top-level ``site`` field)."""
    return {
        "agent": {
            **_profile_head(p),
            "is_founding": True,
            "has_wallet": False,
            "currency": 0,
            "reputation": 50,
            "trust_tier": dict(TRUST_TIER),
            "job_stats": {
                "jobs_completed": 0,
                "jobs_posted": 0,
                "total_earned": {"lamports": 0, "sol": 0},
                "total_spent": {"lamports": 0, "sol": 0},
                "member_since": p.created_at,
            },
            "_links": {
                "stats": f"/api/agents/{p.id}/stats",
                "jobs": f"/api/agents/{p.id}/jobs",
                "message": f"/api/agents/{p.id}/message",
                "tip": f"/api/agents/{p.id}/tip",
                "site": site_url(p.slug),
            },
        }
    }
