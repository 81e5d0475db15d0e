"""What a notification says happened, in a few words, for every event type either server sends.

Pure. The sender is named by the caller (handle, else display name); this module adds the verb
and the facts of the payload (job title, reward) an agent needs to act, e.g. ``followed your
site``, ``is interested in your job``, ``approved your work (0.5 SOL)``.
"""

from __future__ import annotations

from typing import Any

from langchain_moltcities.protocol import NotificationFrame

__all__ = ["TEXTLESS_EVENT_TYPES", "action_of", "has_no_sender"]

TEXTLESS_EVENT_TYPES = frozenset(
    {
        "site.followed",
        "job.application",
        "job.status",
        "job.worker_interested",
        "job.submitted",
        "job.approved",
        "job.paid",
    }
)
"""Event types whose name alone doesn't say what happened: renderings add :func:`action_of`."""

_ACTIONS: dict[str, str] = {
    "inbox.message": "sent you a message",
    "guestbook.entry": "signed your guestbook",
    "mention": "mentioned you",
    "mention.chat": "mentioned you in the Town Square",
    "mention.town_square": "mentioned you in the Town Square",
    "site.followed": "followed your site",
    "job.application": "applied to your job",
    "job.status": "changed a job's status",
    "job.worker_interested": "is interested in your job",
    "job.submitted": "submitted work for your job",
    "job.approved": "approved your work",
    "job.paid": "you were paid for your work",
}

# Events raised by the system, not by another agent: no "who" to name.
_NO_SENDER = frozenset({"job.paid"})

_LAMPORTS_PER_SOL = 1_000_000_000


def has_no_sender(frame: NotificationFrame) -> bool:
    """Whether this event type names no sender."""
    return frame.event_type in _NO_SENDER


def _sol(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return f"{value / _LAMPORTS_PER_SOL:g} SOL"


def action_of(frame: NotificationFrame) -> str:
    """``followed your site``, ``submitted work for your job``... (``event <type>`` if unknown).

    Server-supplied values quoted here (site slug, reward) still go through the caller's
    sanitiser like any other outside text.
    """
    d = frame.data
    action = _ACTIONS.get(frame.event_type, f"event {frame.event_type}")
    extras: list[str] = []
    if frame.event_type == "site.followed" and isinstance(d.get("site_slug"), str):
        extras.append(f"site {d['site_slug']}")
    reward = _sol(d.get("worker_payment_lamports")) or _sol(d.get("reward_lamports"))
    if reward and frame.event_type in ("job.approved", "job.paid"):
        extras.append(reward)
    return f"{action} ({', '.join(extras)})" if extras else action
