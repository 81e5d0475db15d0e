"""Jobs, follows and the live server's other REST extras, over ``ServerState``.

Kept apart from ``state.py`` (connections, notifications, chat) so each stays readable; pure
like it: every call returns its reply and the effects it causes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from langchain_moltcities.server import events, live
from langchain_moltcities.server.state import (
    PERSONAL,
    TOWN_SQUARE,
    Agent,
    ApiError,
    Effect,
    ServerState,
    _rand,
)


@dataclass
class Job:
    """A job posted on the marketplace."""

    id: str
    title: str
    description: str
    poster: Agent
    status: str = "open"
    worker: Agent | None = None
    reward_lamports: int = 0
    attempts: int = 0


JOB_STATUSES = ("open", "in_progress", "submitted", "completed", "approved", "paid", "cancelled")


def notification_stats(state: ServerState, agent: Agent) -> dict[str, Any]:
    """Live ``GET /api/notifications/stats``: unread messages and the last day's others."""
    rows = state._live_rows(agent)
    counts = {t: sum(1 for r in rows if r.type == t) for t in live.REST_LISTED_TYPES}
    unread = sum(1 for r in rows if r.type == "message" and not r.read)
    return {
        "unread_messages": unread,
        "new_guestbook_entries": counts["guestbook"],
        "new_job_attempts": counts["job_attempt"],
        "new_job_updates": counts["job_status"],
        "total_unread": unread + counts["guestbook"] + counts["job_attempt"] + counts["job_status"],
    }


def post_town_square(
    state: ServerState, agent: Agent, message: Any
) -> tuple[dict[str, Any], list[Effect]]:
    """Live only: the legacy ``POST /api/town-square`` (280 characters, ``ts_`` ids), whose
    mentions arrive as ``mention.town_square``."""
    state._rate_check(agent)
    if not message or not isinstance(message, str):
        raise ApiError(400, "message is required")
    if not 1 <= len(message) <= 280:
        raise ApiError(400, "Message must be 1-280 characters", received_length=len(message))
    _, effects = state._store_chat(
        agent,
        "ts_" + _rand(16),
        message.strip(),
        lambda mode, author, post_id, text: events.town_square_mention(author, post_id, text),
    )
    m = state.chat[-1]
    post = {
        "id": m.id,
        "message": m.message,
        "signature": None,
        "created_at": m.created_at,
        "agent": {
            "id": agent.id,
            "name": agent.name,
            "avatar": None,
            "site_url": live.site_url(agent.handle),
        },
    }
    return {"message": "Posted to Town Square.", "post": post}, effects


def my_sites(state: ServerState, agent: Agent) -> dict[str, Any]:
    """``GET /api/my/sites``: the agent's own site."""
    return live.my_sites_body(state._profile(agent))


def agent_profile(state: ServerState, id_or_slug: str) -> dict[str, Any]:
    """``GET /api/agents/{id or slug}`` (live)."""
    agent = state.agent_by_handle(id_or_slug) or next(
        (a for a in state.agents.values() if a.id == id_or_slug), None
    )
    if agent is None:
        raise ApiError(404, "Agent not found")
    return live.agent_body(state._profile(agent))


def follow_site(
    state: ServerState, follower: Agent, slug: str
) -> tuple[dict[str, Any], list[Effect]]:
    """Live ``POST /api/sites/{slug}/follow``: the owner gets ``site.followed`` once."""
    owner = state.agent_by_handle(slug)
    if owner is None:
        raise ApiError(404, "Site not found")
    if owner.id == follower.id:
        raise ApiError(400, "Can't follow your own site")
    if (follower.id, owner.id) in state.follows:
        return {"message": "Already following"}, []
    state.follows.add((follower.id, owner.id))
    event = events.site_followed(follower.ref(), "site_" + owner.id, owner.handle)
    return {"message": "Following."}, state.raise_event(owner, event)


def ws_status(state: ServerState) -> dict[str, Any]:
    """The live server's WebSocket status: connections per channel."""
    town = len(state._sessions_for(TOWN_SQUARE))
    personal = len(state._sessions_for(PERSONAL))
    return {
        "websocket_status": {
            "town_square": {"connections": town},
            "personal_notifiers": {"total_connections": personal},
            "total": town + personal,
        },
        "timestamp": state.iso(state.now()),
    }


def _require_job(state: ServerState, job_id: str) -> Job:
    job: Job | None = state.jobs.get(job_id)
    if job is None:
        raise ApiError(404, "Job not found", job_id=job_id)
    return job


def _job_body(job: Job) -> dict[str, Any]:
    return {
        "job": {
            "id": job.id,
            "title": job.title,
            "description": job.description,
            "status": job.status,
            "poster_id": job.poster.id,
            "worker_id": job.worker.id if job.worker else None,
        }
    }


def create_job(state: ServerState, poster: Agent, title: Any, description: Any) -> dict[str, Any]:
    """``POST /api/jobs``."""
    for label, value in (("title", title), ("description", description)):
        if not isinstance(value, str) or not value.strip():
            raise ApiError(400, f"{label} is required (a non-empty string)")
    assert isinstance(title, str) and isinstance(description, str)
    job = Job("job_" + _rand(12), title.strip(), description, poster)
    state.jobs[job.id] = job
    return _job_body(job)


def apply_job(
    state: ServerState, applicant: Agent, job_id: str, proposal: Any
) -> tuple[dict[str, Any], list[Effect]]:
    """``POST /api/jobs/{id}/apply``: notify the poster."""
    job = _require_job(state, job_id)
    if not isinstance(proposal, str) or not proposal.strip():
        raise ApiError(400, "proposal is required (a non-empty string)")
    if applicant.id == job.poster.id:
        raise ApiError(400, "You cannot apply to your own job")
    if job.worker is None:
        job.worker = applicant
    job.attempts += 1
    event = events.job_application(
        state.mode, applicant.ref(), job.id, job.title, proposal, live.new_id(), job.attempts
    )
    return _job_body(job), state.raise_event(job.poster, event)


def set_job_status(
    state: ServerState, agent: Agent, job_id: str, status: Any
) -> tuple[dict[str, Any], list[Effect]]:
    """``POST /api/jobs/{id}/status``: notify the other party."""
    job = _require_job(state, job_id)
    if status not in JOB_STATUSES:
        raise ApiError(400, f"status must be one of: {', '.join(JOB_STATUSES)}")
    participants = [job.poster] + ([job.worker] if job.worker else [])
    if agent.id not in {p.id for p in participants}:
        raise ApiError(403, "Only the job's poster or worker can change its status")
    old, job.status = job.status, status
    effects: list[Effect] = []
    if state.mode == "live":
        if job.worker is None:
            return _job_body(job), effects
        facts = events.LiveJob(
            job.id,
            job.title,
            job.poster.ref(),
            job.worker.ref(),
            job.reward_lamports,
            state.iso(state.now() + timedelta(hours=24)),
        )
        by_id = {p.id: p for p in participants}
        for recipient_id, event in events.live_job_events(facts, status):
            if recipient_id != agent.id:
                effects += state.raise_event(by_id[recipient_id], event)
        return _job_body(job), effects
    for other in participants:
        if other.id != agent.id:
            event = events.job_status(state.mode, agent.ref(), job.id, job.title, old, status)
            effects += state.raise_event(other, event)
    return _job_body(job), effects
