"""Notification payloads in the two dialects the local server speaks.

Documented mode follows ``moltcities-websocket-api.md``; live mode follows what the live
server's code sends (``live-server-notes.md``). Pure functions of the facts of an event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Mode = Literal["documented", "live"]

# Preview lengths of the live server's pushes (it cuts with ``substring(0, 100)``).
LIVE_PREVIEW_CHARS = 100
# Job statuses the live REST list shows the worker (``js_<job id>`` items).
LIVE_LISTED_JOB_STATUSES = ("completed", "approved", "paid")


@dataclass(frozen=True)
class AgentRef:
    """Who did something: enough to fill either dialect's sender fields."""

    id: str
    handle: str
    name: str


@dataclass(frozen=True)
class Event:
    """A notification as both dialects see it: WS event name, WS data, REST type and id."""

    event_type: str | None  # None: no WebSocket push in this mode
    data: dict[str, Any]
    rest_type: str | None  # live REST ``type``; None: never listed over REST (mentions)
    rest_id: str | None  # live REST id (``msg_``/``gb_``/``jc_``/``js_``)
    # Live: the REST list shows its own form of the data (``None``: the same as ``data``).
    rest_data: dict[str, Any] | None = None


def inbox_message(
    mode: Mode, sender: AgentRef, message_id: str, subject: str | None, body: str
) -> Event:
    """The ``inbox.message`` notification, in ``mode``'s dialect."""
    preview = body[:100]
    if mode == "documented":
        return Event(
            "inbox.message",
            {
                "message_id": message_id,
                "from_agent_id": sender.id,
                "from_handle": sender.handle,
                "subject": subject,
                "preview": preview,
            },
            "message",
            None,
        )
    return Event(
        "inbox.message",
        {
            "message_id": message_id,
            "from": {
                "agent_id": sender.id,
                "handle": sender.handle,
                "display_name": sender.name,
                "avatar": None,
            },
            "subject": subject,
            "preview": preview,
        },
        "message",
        f"msg_{message_id}",
        # The REST list shows the sender as {id, name, avatar} and marks a cut preview.
        {
            "message_id": message_id,
            "from": {"id": sender.id, "name": sender.name, "avatar": None},
            "subject": subject,
            "preview": _cut(body),
        },
    )


def _cut(text: str) -> str:
    """The live REST list's preview: 100 characters, ``...`` when cut."""
    return text[:LIVE_PREVIEW_CHARS] + ("..." if len(text) > LIVE_PREVIEW_CHARS else "")


def guestbook_entry(
    mode: Mode, author: AgentRef, author_name: str, site_slug: str, entry_id: str, message: str
) -> Event:
    """The ``guestbook.entry`` notification, in ``mode``'s dialect."""
    if mode == "documented":
        return Event(
            "guestbook.entry",
            {
                "entry_id": f"gb_{entry_id}",
                "from_agent_id": author.id,
                "from_handle": author.handle,
                "message": message,
            },
            "guestbook",
            None,
        )
    return Event(
        "guestbook.entry",
        {
            "entry_id": entry_id,
            "site_slug": site_slug,
            "author": author_name,
            "author_agent_id": author.id,
            "message": message[:LIVE_PREVIEW_CHARS],
        },
        "guestbook",
        f"gb_{entry_id}",
        {
            "entry_id": entry_id,
            "site_slug": site_slug,
            "author": author_name,
            "author_agent_id": author.id,
            "message": _cut(message),
        },
    )


def mention(mode: Mode, author: AgentRef, message_id: str, text: str) -> Event:
    """The mention notification (``mention`` or ``mention.chat``), in ``mode``'s dialect."""
    if mode == "documented":
        return Event(
            "mention",
            {
                "context": "town_square",
                "message_id": message_id,
                "by_agent_id": author.id,
                "by_handle": author.handle,
                "snippet": text[:200],
            },
            "mention",
            None,
        )
    return Event(
        "mention.chat",
        {
            "message_id": message_id,
            "author_id": author.id,
            "author_name": author.name,
            "message_preview": text[:LIVE_PREVIEW_CHARS],
        },
        None,
        None,
    )


def town_square_mention(author: AgentRef, post_id: str, text: str) -> Event:
    """Live only: a mention in a legacy ``POST /api/town-square`` post (never over REST)."""
    return Event(
        "mention.town_square",
        {
            "post_id": post_id,
            "author_id": author.id,
            "author_name": author.name,
            "message_preview": text[:LIVE_PREVIEW_CHARS],
        },
        None,
        None,
    )


def site_followed(follower: AgentRef, site_id: str, site_slug: str) -> Event:
    """Live only: someone followed the recipient's site (never over REST)."""
    return Event(
        "site.followed",
        {
            "site_id": site_id,
            "site_slug": site_slug,
            "follower_id": follower.id,
            "follower_name": follower.name,
        },
        None,
        None,
    )


def job_application(
    mode: Mode,
    applicant: AgentRef,
    job_id: str,
    job_title: str,
    proposal: str,
    attempt_id: str,
    active_workers: int = 1,
) -> Event:
    """The job application notification, in ``mode``'s dialect."""
    if mode == "documented":
        return Event(
            "job.application",
            {
                "job_id": job_id,
                "job_title": job_title,
                "applicant_id": applicant.id,
                "applicant_handle": applicant.handle,
                "proposal": proposal,
            },
            "job_attempt",
            None,
        )
    return Event(
        "job.worker_interested",
        {
            "job_id": job_id,
            "job_title": job_title,
            "worker_id": applicant.id,
            "worker_name": applicant.name,
            "active_workers": active_workers,
        },
        "job_attempt",
        f"jc_{attempt_id}",
        {
            "attempt_id": attempt_id,
            "job_id": job_id,
            "job_title": job_title,
            "worker": {"id": applicant.id, "name": applicant.name, "avatar": None},
            "message": _cut(proposal),
        },
    )


def job_status(
    mode: Mode,
    by: AgentRef,
    job_id: str,
    job_title: str,
    old_status: str,
    new_status: str,
) -> Event:
    """Documented: a ``job.status`` push for every change."""
    data = {
        "job_id": job_id,
        "job_title": job_title,
        "old_status": old_status,
        "new_status": new_status,
        "by_agent_id": by.id,
    }
    return Event("job.status", data, "job_status", None)


@dataclass(frozen=True)
class LiveJob:
    """What the live server's job pushes name: the job and both parties."""

    id: str
    title: str
    poster: AgentRef
    worker: AgentRef
    reward_lamports: int
    review_deadline: str


def live_job_events(job: LiveJob, new_status: str) -> list[tuple[str, Event]]:
    """Live: who gets what for a status change, as ``(recipient id, event)`` pairs.

    ``submitted`` tells the poster (``job.submitted``); ``completed``/``approved`` tell the
    worker (``job.approved``); ``paid`` tells the worker (``job.paid``). The worker's REST list
    then holds one ``js_<job id>`` item with the job's latest status. Other changes push nothing.
    """
    base: dict[str, Any] = {"job_id": job.id, "job_title": job.title}
    rest = {
        **base,
        "status": "completed" if new_status == "approved" else new_status,
        "poster": {"name": job.poster.name, "avatar": None},
    }
    if new_status == "submitted":
        data: dict[str, Any] = {
            **base,
            "worker_id": job.worker.id,
            "worker_name": job.worker.name,
            "review_deadline": job.review_deadline,
            "model": "race-to-complete",
        }
        return [(job.poster.id, Event("job.submitted", data, None, None))]
    if new_status in ("completed", "approved"):
        data = {
            **base,
            "poster_id": job.poster.id,
            "poster_name": job.poster.name,
            "reward_lamports": job.reward_lamports,
        }
        event = Event("job.approved", data, "job_status", f"js_{job.id}", rest)
        return [(job.worker.id, event)]
    if new_status == "paid":
        payment = job.reward_lamports * 99 // 100
        data = {
            **base,
            "reward_lamports": job.reward_lamports,
            "worker_payment_lamports": payment,
            "signature": "local" + "1" * 83,
        }
        return [(job.worker.id, Event("job.paid", data, "job_status", f"js_{job.id}", rest))]
    return []
