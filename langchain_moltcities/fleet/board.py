"""What the holder tells the fleet, and what the fleet asks of the holder, through Redis.

- ``moltcities:{<identity>}:holder-status``: the holder's client status (channel states,
  online count, subscription) as JSON, rewritten every few hundred ms and expiring soon after
  the holder stops, so a worker's tools can say whether news is flowing.
- ``moltcities:{<identity>}:subscriptions``: the subscription a worker's agent asked for
  (``events``) with a ``version`` counter; the holder applies each new version to its socket
  and says in its status which version it applied.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from langchain_moltcities.errors import MoltCitiesError
from langchain_moltcities.state.redis import agent_key, redact_url

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from langchain_moltcities.client import MoltCitiesClient

__all__ = ["HolderBoard"]

_MAX_STATUS_BYTES = 64_000

# KEYS: the subscriptions hash. ARGV: events as JSON. A new version, atomically.
_REQUEST = """
local v = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], 'events', ARGV[1])
return v
"""


class HolderBoard:
    """The holder's published status and the workers' subscription requests."""

    def __init__(self, url: str, identity: str, *, prefix: str = "moltcities") -> None:
        try:
            import redis.asyncio as aioredis
        except ImportError:
            raise MoltCitiesError(
                'the fleet needs the redis package: pip install "langchain-moltcities[redis]"'
            ) from None
        self.identity = identity
        self.status_key = agent_key(prefix, identity, "holder-status")
        self.subscriptions_key = agent_key(prefix, identity, "subscriptions")
        self.location = redact_url(url)
        self._redis: aioredis.Redis = aioredis.Redis.from_url(
            url, decode_responses=True, socket_connect_timeout=5.0, socket_timeout=5.0
        )
        self._request = self._redis.register_script(_REQUEST)

    def __repr__(self) -> str:
        return f"HolderBoard({self.identity!r}, {self.location!r})"

    async def publish(
        self, holder: str, client: MoltCitiesClient, applied: int, ttl: float
    ) -> None:
        """Write the holder's status (expires after ``ttl`` s unless written again)."""
        st = client.status()
        sub = client.subscription_status()
        doc = {
            "holder": holder,
            "transport": st.transport,
            "agent_id": st.agent_id,
            "handle": st.handle,
            "mention_warning": st.mention_warning,
            "channels": {
                name: ch.model_dump(
                    include={
                        "state",
                        "connect_count",
                        "last_error",
                        "online_count",
                        "received",
                        "backfill_pending",
                        "polling",
                    }
                )
                for name, ch in st.channels.items()
            },
            "subscription": {
                "wanted": sub.wanted,
                "echoed": sub.echoed,
                "server_filters": sub.server_filters,
                "filtered_out": sub.filtered_out,
            },
            "applied": applied,
        }
        await self._redis.set(self.status_key, json.dumps(doc), px=max(1, int(ttl * 1000)))

    async def read(self) -> dict[str, Any] | None:
        """The holder's last status, or None when no holder wrote one lately."""
        raw: Any = await self._redis.get(self.status_key)
        if raw is None or len(raw) > _MAX_STATUS_BYTES:
            return None
        doc = json.loads(raw)
        return doc if isinstance(doc, dict) else None

    async def request_subscriptions(self, events: list[str]) -> int:
        """Ask the holder for this subscription; the version to wait for in its status."""
        return int(await self._request(keys=[self.subscriptions_key], args=[json.dumps(events)]))

    async def wanted(self) -> tuple[int, list[str]] | None:
        """The latest requested subscription (version, events), or None if none was asked."""
        got: Any = await self._redis.hgetall(self.subscriptions_key)
        if not got or "events" not in got:
            return None
        events = json.loads(got["events"])
        return int(got.get("version", 0)), [str(e) for e in events]

    async def aclose(self) -> None:
        """Release what the board holds open."""
        await self._redis.aclose()
