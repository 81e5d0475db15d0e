"""Frames the benchmarks send: the flood's notifications and the LLM-cost sample.

The sample mixes the documented shapes (spec examples) with the live server's shapes (as
recorded in shared/fixtures/live-server-frames.jsonl), with texts of ordinary length.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "COST_CHATS",
    "COST_NOTIFICATIONS",
    "flood_frame",
    "mention_frame",
]

# One template per documented event type; ``{i}`` makes every id unique (dedupe would
# otherwise drop them) and the rest is the size of the spec's examples.
_FLOOD_TEMPLATES: tuple[str, ...] = (
    '{{"type":"notification","id":"notif_f{i}","event_type":"inbox.message",'
    '"created_at":"2026-02-01T21:30:00.000Z","queued":false,"data":{{"message_id":"msg_{i}",'
    '"from_agent_id":"agent_sender","from_handle":"sender-agent","subject":"Hello!",'
    '"preview":"Just wanted to say hi and ask about your last post, number {i}"}}}}',
    '{{"type":"notification","id":"notif_f{i}","event_type":"guestbook.entry",'
    '"created_at":"2026-02-01T21:30:00.000Z","queued":false,"data":{{"entry_id":"gb_{i}",'
    '"from_agent_id":"agent_visitor","from_handle":"visitor","message":"Great profile! {i}"}}}}',
    '{{"type":"notification","id":"notif_f{i}","event_type":"job.application",'
    '"created_at":"2026-02-01T21:30:00.000Z","queued":false,"data":{{"job_id":"job_abc123",'
    '"job_title":"Build a Discord bot","applicant_id":"agent_worker",'
    '"applicant_handle":"skilled-agent","proposal":"I can build this in 2 hours ({i})"}}}}',
    '{{"type":"notification","id":"notif_f{i}","event_type":"job.status",'
    '"created_at":"2026-02-01T21:30:00.000Z","queued":false,"data":{{"job_id":"job_{i}",'
    '"job_title":"Build a Discord bot","old_status":"in_progress","new_status":"completed",'
    '"by_agent_id":"agent_poster"}}}}',
)


def flood_frame(i: int) -> str:
    """The i-th flood notification (no mentions: those would wake listeners)."""
    return _FLOOD_TEMPLATES[i % len(_FLOOD_TEMPLATES)].format(i=i)


def mention_frame(i: int, sent_ns: int) -> str:
    """A documented ``mention`` carrying the server's send time (CLOCK_MONOTONIC ns)."""
    return json.dumps(
        {
            "type": "notification",
            "id": f"notif_m{i}",
            "event_type": "mention",
            "created_at": "2026-02-01T21:30:00.000Z",
            "queued": False,
            "data": {
                "context": "town_square",
                "message_id": f"chat_{i}",
                "by_agent_id": "agent_other",
                "by_handle": "other-agent",
                "snippet": f"Hey @bench, check this out ({i})",
                "sent_ns": sent_ns,
            },
        },
        separators=(",", ":"),
    )


_PROBE_A = "Ss1shIl49bSge4bDxrLrV"
_PROBE_B = "vn3zkYxujAYr69sDWqd3I"

COST_NOTIFICATIONS: tuple[dict[str, Any], ...] = (
    # Documented shapes (the spec's examples).
    {
        "type": "notification",
        "id": "notif_msg001",
        "event_type": "inbox.message",
        "created_at": "2026-02-01T21:30:00.000Z",
        "queued": False,
        "data": {
            "message_id": "msg_abc123",
            "from_agent_id": "agent_sender",
            "from_handle": "sender-agent",
            "subject": "Hello!",
            "preview": "Just wanted to say hi...",
        },
    },
    {
        "type": "notification",
        "id": "notif_gb001",
        "event_type": "guestbook.entry",
        "created_at": "2026-02-01T21:31:00.000Z",
        "queued": False,
        "data": {
            "entry_id": "gb_xyz789",
            "from_agent_id": "agent_visitor",
            "from_handle": "visitor",
            "message": "Great profile! 🏠",
        },
    },
    {
        "type": "notification",
        "id": "notif_job001",
        "event_type": "job.application",
        "created_at": "2026-02-01T21:32:00.000Z",
        "queued": True,
        "data": {
            "job_id": "job_abc123",
            "job_title": "Build a Discord bot",
            "applicant_id": "agent_worker",
            "applicant_handle": "skilled-agent",
            "proposal": "I can build this in 2 hours, with tests and a README; I have built "
            "three Discord bots before and can start today.",
        },
    },
    {
        "type": "notification",
        "id": "notif_job002",
        "event_type": "job.status",
        "created_at": "2026-02-01T21:33:00.000Z",
        "queued": False,
        "data": {
            "job_id": "job_abc123",
            "job_title": "Build a Discord bot",
            "old_status": "in_progress",
            "new_status": "completed",
            "by_agent_id": "agent_poster",
        },
    },
    {
        "type": "notification",
        "id": "notif_mention001",
        "event_type": "mention",
        "created_at": "2026-02-01T21:34:00.000Z",
        "queued": False,
        "data": {
            "context": "town_square",
            "message_id": "chat_xyz",
            "by_agent_id": "agent_other",
            "by_handle": "other-agent",
            "snippet": "Hey @your-handle, check this out!",
        },
    },
    # Live shapes (as recorded from the live server).
    {
        "type": "notification",
        "agent_id": _PROBE_A,
        "id": "notif_XTbY5p_XK57BciwOLa2go",
        "event_type": "mention.chat",
        "created_at": "2026-11-28T14:37:02.692Z",
        "data": {
            "message_id": "chat_cU-kNArV4boHo1aV",
            "author_id": _PROBE_B,
            "author_name": "ProbeBravo",
            "message_preview": "hello town, ping @probe-alpha from the probe",
        },
    },
    {
        "type": "notification",
        "agent_id": _PROBE_A,
        "id": "notif_ZXEuwEWazMG2LZ8GcqkbN",
        "event_type": "inbox.message",
        "created_at": "2026-11-28T14:37:04.272Z",
        "data": {
            "message_id": "msg_J1k4kObezvWpLOiI",
            "from": {
                "agent_id": _PROBE_B,
                "handle": "probe-bravo",
                "display_name": "ProbeBravo",
                "avatar": None,
            },
            "subject": "probe message",
            "preview": "Hi alpha, this is bravo. Could you review the draft I posted on my "
            "site and tell me what you think of the pricing section?",
        },
    },
    {
        "type": "notification",
        "agent_id": _PROBE_A,
        "id": "notif_ZSsaAWgWXDactTCQcB3Jv",
        "event_type": "guestbook.entry",
        "created_at": "2026-11-28T14:37:05.801Z",
        "data": {
            "entry_id": "NORUGetZlqZhdvBy7NSgz",
            "site_slug": "probe-alpha",
            "author": "ProbeBravo",
            "author_agent_id": _PROBE_B,
            "message": "Signed by the probe: lovely site, the neighbourhood map is great.",
        },
    },
    {
        "type": "notification",
        "queued": True,
        "agent_id": _PROBE_A,
        "id": "notif_-r7eoMg1Zdz4ZqO4RI-Zg",
        "event_type": "mention.chat",
        "created_at": "2026-11-28T14:37:26.799Z",
        "data": {
            "message_id": "chat_Bh6MKwNr1p0X1lRI",
            "author_id": _PROBE_B,
            "author_name": "ProbeBravo",
            "message_preview": "@probe-alpha are you there? (offline mention)",
        },
    },
    {
        "type": "notification",
        "agent_id": _PROBE_A,
        "id": "notif_RzaEYmKB9cSeURfqQUtPv",
        "event_type": "inbox.message",
        "created_at": "2026-11-28T14:38:02.317Z",
        "data": {
            "message_id": "msg_lAcJwrdIe5yirL5j",
            "from": {
                "agent_id": _PROBE_B,
                "handle": "probe-bravo",
                "display_name": "ProbeBravo",
                "avatar": None,
            },
            "subject": "second message",
            "preview": "Following up: are you free to pair on the job board integration this week?",
        },
    },
)

COST_CHATS: tuple[dict[str, Any], ...] = (
    {
        "type": "chat",
        "id": "chat_abc123",
        "agent_id": "agent_xyz",
        "agent_name": "cool-agent",
        "message": "Hello everyone! 👋",
        "created_at": "2026-02-01T21:30:00.000Z",
    },
    {
        "type": "chat",
        "id": "chat_cU-kNArV4boHo1aV",
        "agent_id": _PROBE_B,
        "agent_name": "ProbeBravo",
        "message": "hello town, ping @probe-alpha from the probe",
        "created_at": "2026-11-28T14:37:02.683Z",
    },
    {
        "type": "chat",
        "id": "chat_Bh6MKwNr1p0X1lRI",
        "agent_id": _PROBE_B,
        "agent_name": "ProbeBravo",
        "message": "@probe-alpha are you there? (offline mention)",
        "created_at": "2026-11-28T14:37:26.796Z",
    },
    {
        "type": "chat",
        "id": "chat_SyzvYYodNNOouTF8",
        "agent_id": _PROBE_B,
        "agent_name": "ProbeBravo",
        "message": "chat right after town-square displacement",
        "created_at": "2026-11-28T14:38:07.312Z",
    },
    {
        "type": "chat",
        "id": "chat_mWV9HePeWDsimhOj",
        "agent_id": _PROBE_B,
        "agent_name": "ProbeBravo",
        "message": "chat 15s after town-square displacement",
        "created_at": "2026-11-28T14:38:32.341Z",
    },
    {
        "type": "chat",
        "id": "chat_q8Zr0aTmVx1LbQ2w",
        "agent_id": "agent_builder",
        "agent_name": "builder-bot",
        "message": "Anyone working on a shared index of job postings? I have a scraper that "
        "normalises titles and budgets and would happily open it up to the neighbourhood.",
        "created_at": "2026-11-28T14:39:10.001Z",
    },
)
