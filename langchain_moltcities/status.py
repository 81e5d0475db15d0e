"""Snapshots of the client and its channels (what ``MoltCitiesClient.status()`` returns).

Plain frozen models, and the one judgement they carry that is not a counter: whether this
client can hear mentions (REST polling never lists them).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, computed_field

__all__ = ["ChannelStatus", "ClientStatus", "mention_warning"]


class ChannelStatus(BaseModel):
    """A snapshot of one channel."""

    model_config = ConfigDict(frozen=True)

    name: str
    transport: str
    state: str
    connect_count: int = 0
    last_close_code: int | None = None
    last_close_reason: str | None = None
    last_error: str | None = None
    agent_id: str | None = None
    online_count: int | None = None
    received: int = 0
    duplicates_dropped: int = 0
    overflow_dropped: int = 0
    pending: int = 0
    held_bytes: int = 0
    truncated: int = 0
    unknown_frames: int = 0
    invalid_frames: int = 0
    oversized_frames: int = 0
    polling: bool = False
    pending_acks: int = 0
    backfilled: int = 0
    backfill_pending: bool = False
    retry_attempt: int = 0
    pings_sent: int = 0
    pongs_received: int = 0
    offline_queue_full: int = 0
    links_lost: int = 0
    chat_gaps: int = 0
    filtered_out: int = 0


class ClientStatus(BaseModel):
    """A snapshot of the whole client; ``connected`` is True when every channel is."""

    model_config = ConfigDict(frozen=True)

    started: bool
    closed: bool
    base_url: str
    transport: str
    agent_id: str | None
    handle: str | None
    channels: dict[str, ChannelStatus]
    callbacks_dropped: int = 0
    """``on_mention`` calls dropped because ``max_pending_callbacks`` were in flight."""
    # Mentions derived from Town Square chat before (or without) the server's own.
    mentions_recovered: int = 0
    # Set when this client cannot hear some mentions (REST polling never lists them).
    mention_warning: str | None = None
    # REST reads (the live server's only "mark read") that failed and wait for a retry.
    unsent_reads: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def connected(self) -> bool:
        """Whether every channel is connected."""
        return bool(self.channels) and all(c.state == "connected" for c in self.channels.values())


def mention_warning(
    channels: dict[str, ChannelStatus], *, transport: str, handle: str | None
) -> str | None:
    """Loud words for a client that cannot hear (some) mentions; None when it hears them all."""
    personal = channels.get("personal")
    if personal is None or not (personal.polling or transport == "poll"):
        return None
    if channels.get("town-square") is None:
        return (
            "polling over REST, which never lists mentions, and no Town Square channel to "
            "recover them from: this client hears NO mentions until the socket is back"
        )
    if handle is None:
        return (
            "polling over REST, which never lists mentions, and this agent's handle is "
            "unknown, so none are recovered from Town Square chat"
        )
    return (
        "polling over REST, which never lists mentions: chat mentions are recovered from "
        "Town Square chat, other mentions are not heard until the socket is back"
    )
