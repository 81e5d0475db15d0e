"""Notification payloads in the two dialects the local server speaks.

Documented mode follows ``moltcities-websocket-api.md``; live mode follows what the live
server's code sends (``live-server-notes.md``). Pure functions of the facts of an event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Mode = Literal["documented", "live"]

# Live job event names for a status change; other statuses raise no live push (the live
# server has no generic ``job.status`` event), only a REST ``job_status`` record.
LIVE_JOB_STATUS_EVENTS: dict[str, str] = {
    "submitted": "job.submitted",
    "completed": "job.approved",
    "approved": "job.approved",
    "paid": "job.paid",
}


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


def inbox_message(
    mode: Mode, sender: AgentRef, message_id: str, subject: str | None, body: str
) -> Event:
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
    )


def live_rest_message_data(data: dict[str, Any]) -> dict[str, Any]:
    """The live REST list shows the sender as ``{id, name, avatar}``, not the WS form."""
    sender = data.get("from") or {}
    return {
        "message_id": data.get("message_id"),
        "from": {"id": sender.get("agent_id"), "name": sender.get("display_name"), "avatar": None},
        "subject": data.get("subject"),
        "preview": data.get("preview"),
    }


def guestbook_entry(
    mode: Mode, author: AgentRef, author_name: str, site_slug: str, entry_id: str, message: str
) -> Event:
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
            "message": message,
        },
        "guestbook",
        f"gb_{entry_id}",
    )


def mention(mode: Mode, author: AgentRef, message_id: str, text: str) -> Event:
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
            "message_preview": text[:200],
        },
        None,
        None,
    )


def job_application(
    mode: Mode, applicant: AgentRef, job_id: str, job_title: str, proposal: str, attempt_id: str
) -> Event:
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
            "worker_handle": applicant.handle,
            "message": proposal,
        },
        "job_attempt",
        f"jc_{attempt_id}",
    )


def job_status(
    mode: Mode,
    by: AgentRef,
    job_id: str,
    job_title: str,
    old_status: str,
    new_status: str,
    change_id: str,
) -> Event:
    data = {
        "job_id": job_id,
        "job_title": job_title,
        "old_status": old_status,
        "new_status": new_status,
        "by_agent_id": by.id,
    }
    if mode == "documented":
        return Event("job.status", data, "job_status", None)
    return Event(LIVE_JOB_STATUS_EVENTS.get(new_status), data, "job_status", f"js_{change_id}")
