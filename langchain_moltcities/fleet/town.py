"""Town Square chat and presence, shared by the fleet: the holder appends, every worker reads.

Chat is broadcast, not work: each worker's agent reads all of it, with a cursor of its own
(unlike notifications, which go to one worker each through :mod:`.stream`'s consumer group).
The holder appends what its client receives to ``moltcities:{<identity>}:town``
(``XADD ... MAXLEN ~``, so the stream keeps about ``maxlen`` recent items); a chat message is
appended once (a marker key with a TTL), since a new holder back-fills chat its predecessor
had already appended. Readers use ``XRANGE`` after their last entry id.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from langchain_moltcities.catchup import ChatGap
from langchain_moltcities.errors import MoltCitiesError
from langchain_moltcities.protocol import ChatFrame, PresenceFrame
from langchain_moltcities.state.redis import agent_key, redact_url

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = ["TownItem", "TownStream"]

TownItem = ChatFrame | PresenceFrame

# KEYS: stream, the message's "appended" marker. ARGV: maxlen, marker ttl ms, kind, frame.
_APPEND_ONCE = """
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) then
  return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'kind', ARGV[3],
                    'frame', ARGV[4])
end
return false
"""


class TownStream:
    """One identity's shared Town Square stream."""

    def __init__(
        self,
        url: str,
        identity: str,
        *,
        maxlen: int = 1000,
        dedupe_ttl: float = 24 * 3600,
        prefix: str = "moltcities",
    ) -> None:
        try:
            import redis.asyncio as aioredis
        except ImportError:
            raise MoltCitiesError(
                'the fleet needs the redis package: pip install "langchain-moltcities[redis]"'
            ) from None
        self.identity, self.maxlen, self.dedupe_ttl, self.prefix = (
            identity,
            maxlen,
            dedupe_ttl,
            prefix,
        )
        self.key = agent_key(prefix, identity, "town")
        self.location = redact_url(url)
        self._redis: aioredis.Redis = aioredis.Redis.from_url(url, decode_responses=True)
        self._append = self._redis.register_script(_APPEND_ONCE)

    def __repr__(self) -> str:
        return f"TownStream({self.identity!r}, {self.location!r})"

    async def append_many(self, items: list[TownItem]) -> int:
        """Append chat (once per message id) and presence, in one round trip; how many."""
        if not items:
            return 0
        pipe = self._redis.pipeline(transaction=False)
        for item in items:
            body = item.model_dump_json()
            if isinstance(item, ChatFrame):
                marker = agent_key(self.prefix, self.identity, "town-seen", item.id)
                await self._append(
                    keys=[self.key, marker],
                    args=[self.maxlen, int(self.dedupe_ttl * 1000), "chat", body],
                    client=pipe,
                )
            else:
                pipe.xadd(
                    self.key,
                    {"kind": "presence", "frame": body},
                    maxlen=self.maxlen,
                    approximate=True,
                )
        replies = await pipe.execute()
        return sum(1 for r in replies if r is not None)

    async def append_gaps(self, gaps: list[ChatGap]) -> None:
        """Tell every worker of spans the holder's back-fill could not fill."""
        if gaps:
            pipe = self._redis.pipeline(transaction=False)
            for gap in gaps:
                body = {"kind": "gap", "frame": json.dumps(gap.as_dict())}
                pipe.xadd(self.key, body, maxlen=self.maxlen, approximate=True)  # type: ignore[arg-type]
            await pipe.execute()

    async def read(
        self, after: str | None, count: int
    ) -> tuple[list[TownItem | ChatGap], str | None]:
        """Up to ``count`` items (and gaps) after entry id ``after`` (None: from the oldest
        kept), and the last entry id read (``after`` again when there was nothing new)."""
        start = "-" if after is None else "(" + after
        rows: Any = await self._redis.xrange(self.key, min=start, max="+", count=count)
        out: list[TownItem | ChatGap] = []
        last = after
        for entry_id, fields in rows:
            last = str(entry_id)
            data = json.loads(fields["frame"])
            kind = fields.get("kind")
            if kind == "chat":
                out.append(ChatFrame.model_validate(data))
            elif kind == "gap":
                out.append(
                    ChatGap(
                        after=str(data["after"]),
                        until=None if data.get("until") is None else str(data["until"]),
                        page_size=int(data["page_size"]),
                    )
                )
            else:
                out.append(PresenceFrame.model_validate(data))
        return out, last

    async def aclose(self) -> None:
        """Release what the stream holds open."""
        await self._redis.aclose()
