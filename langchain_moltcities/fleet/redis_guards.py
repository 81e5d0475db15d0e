"""The shared mention guards on Redis: :class:`RedisTurnGuards` (the rules are in :mod:`.guards`).

Every step is one Lua script on Redis's clock (``TIME``), so the workers' clocks never
disagree; every key sits under the identity's hash tag and carries a TTL.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from langchain_moltcities.errors import MoltCitiesError
from langchain_moltcities.fleet.guards import (
    Admission,
    GuardLimits,
    SharedGuardsError,
    safe_key_part,
)
from langchain_moltcities.state.redis import agent_key, redact_url

if TYPE_CHECKING:
    import redis as redis_lib

__all__ = ["RedisTurnGuards"]

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: pause, turns, replies, claim, tried, <n_done done keys>, <author cool keys>.
# ARGV: token, claim_ttl, cooldown, window, max_turns, max_replies (0: none), dedupe_ttl (ms),
# n_done. Returns {verdict, wait ms, since ms or done verdict}.
_BEGIN = (
    _NOW
    + """
local token, claim_ttl, cooldown = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local window, max_turns, max_replies = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local n_done = tonumber(ARGV[8])
for i = 6, 5 + n_done do
  local v = redis.call('GET', KEYS[i])
  if v then return {'duplicate', 0, v} end
end
local holder = redis.call('GET', KEYS[4])
if holder and holder ~= token then return {'busy', redis.call('PTTL', KEYS[4]), ''} end
local paused = redis.call('PTTL', KEYS[1])
if paused > 0 then return {'paused', paused, ''} end
local tried = redis.call('GET', KEYS[5])
if not tried then
  for i = 6 + n_done, #KEYS do
    local v = redis.call('GET', KEYS[i])
    if v and v ~= token then
      local verdict = 'busy'
      if cooldown > 0 then verdict = 'cooldown' end
      return {verdict, redis.call('PTTL', KEYS[i]), ''}
    end
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - window)
  local wait = 0
  local turns = redis.call('ZCARD', KEYS[2])
  if turns >= max_turns then
    local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    wait = tonumber(oldest[2]) + window - now
  end
  local replies = redis.call('ZCARD', KEYS[3])
  if max_replies > 0 and replies >= max_replies then
    local at = redis.call('ZRANGE', KEYS[3], replies - max_replies, replies - max_replies,
                          'WITHSCORES')
    wait = math.max(wait, tonumber(at[2]) + window - now)
  end
  if wait > 0 then return {'cap', wait, ''} end
  redis.call('ZADD', KEYS[2], now, token)
  redis.call('PEXPIRE', KEYS[2], window)
  redis.call('SET', KEYS[5], now, 'PX', ARGV[7])
end
redis.call('SET', KEYS[4], token, 'PX', claim_ttl)
for i = 6 + n_done, #KEYS do
  redis.call('SET', KEYS[i], token, 'PX', math.max(cooldown, claim_ttl))
end
if tried then return {'retry', 0, tried} end
return {'claimed', 0, tostring(now)}
"""
)

# KEYS: claim, <author cool keys>. ARGV: token, claim_ttl, cooldown (ms).
_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
for i = 2, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[i], math.max(tonumber(ARGV[2]), tonumber(ARGV[3])))
  end
end
return 1
"""

# KEYS: claim, tried, replies, <n_done done keys>, <author cool keys>. ARGV: token, verdict,
# replies to count, cooldown, window, dedupe_ttl (ms), n_done.
_FINISH = (
    _NOW
    + """
local token, cooldown, n_done = ARGV[1], tonumber(ARGV[4]), tonumber(ARGV[7])
local mine = redis.call('GET', KEYS[1]) == token
for i = 4, 3 + n_done do redis.call('SET', KEYS[i], ARGV[2], 'PX', ARGV[6]) end
if mine then redis.call('DEL', KEYS[1]) end
redis.call('DEL', KEYS[2])
for i = 4 + n_done, #KEYS do
  local v = redis.call('GET', KEYS[i])
  if cooldown > 0 and (not v or v == token or v == 'done') then
    redis.call('SET', KEYS[i], 'done', 'PX', cooldown)
  elseif cooldown == 0 and v == token then
    redis.call('DEL', KEYS[i])
  end
end
for i = 1, tonumber(ARGV[3]) do redis.call('ZADD', KEYS[3], now, token .. ':' .. i) end
if tonumber(ARGV[3]) > 0 then redis.call('PEXPIRE', KEYS[3], ARGV[5]) end
if mine then return 1 end
return 0
"""
)

# KEYS: claim, <author cool keys>. ARGV: token.
_RELEASE = """
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then redis.call('DEL', KEYS[i]) end
end
return 0
"""

# KEYS: pause. ARGV: ms. Never shortens a pause in force.
_PAUSE = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '429', 'PX', ARGV[1])
end
return redis.call('PTTL', KEYS[1])
"""


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class RedisTurnGuards:
    """The guards of one identity on Redis, shared by every worker that names it.

    Keys: ``<prefix>:{<identity>}:resp:`` + ``done:<id>``, ``claim:<id>``, ``tried:<id>``,
    ``cool:<author>``, ``turns`` and ``replies`` (sorted sets of the window), ``pause``; all
    with a TTL (at most ``dedupe_ttl``). Redis unreachable: every call raises
    :class:`SharedGuardsError` naming the server (never its password), after one attempt
    bounded by ``timeout`` seconds; the caller decides when to ask again.
    """

    def __init__(
        self,
        url: str,
        identity: str,
        limits: GuardLimits | None = None,
        *,
        prefix: str = "moltcities",
        timeout: float = 5.0,
    ) -> None:
        try:
            import redis as redis_lib
        except ImportError:
            raise MoltCitiesError(
                'shared guards need the redis package: pip install "langchain-moltcities[redis]"'
            ) from None
        self.limits = limits or GuardLimits()
        self.identity, self.prefix = identity, prefix
        self.location = redact_url(url)
        self._redis: redis_lib.Redis = redis_lib.Redis.from_url(
            url, decode_responses=True, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._errors: tuple[type[BaseException], ...] = (redis_lib.RedisError, OSError)
        self._begin = self._redis.register_script(_BEGIN)
        self._renew = self._redis.register_script(_RENEW)
        self._finish = self._redis.register_script(_FINISH)
        self._release = self._redis.register_script(_RELEASE)
        self._pause = self._redis.register_script(_PAUSE)

    def __repr__(self) -> str:
        return f"RedisTurnGuards({self.identity!r}, {self.location!r})"

    def key(self, *rest: str) -> str:
        """The Redis key of one of this identity's guard records."""
        return agent_key(self.prefix, self.identity, "resp", *(safe_key_part(r) for r in rest))

    def _call(self, what: str, run: Callable[[], Any]) -> Any:
        try:
            return run()
        except self._errors as exc:
            raise SharedGuardsError(
                f"the shared mention guards on {self.location} are unreachable ({what}: "
                f"{type(exc).__name__}); no turn starts until Redis answers again. Check "
                "that Redis runs and the URL is right."
            ) from None

    def begin(self, mention: Sequence[str], author: Sequence[str], token: str) -> Admission:
        """See :meth:`TurnGuards.begin`."""
        lim = self.limits
        keys = [
            self.key("pause"),
            self.key("turns"),
            self.key("replies"),
            self.key("claim", mention[-1]),
            self.key("tried", mention[-1]),
            *(self.key("done", m) for m in mention),
            *(self.key("cool", a) for a in author),
        ]
        args: list[str | int] = [
            token,
            _ms(lim.claim_ttl),
            round(lim.cooldown * 1000),
            _ms(lim.window),
            lim.max_turns,
            lim.max_replies or 0,
            _ms(lim.dedupe_ttl),
            len(mention),
        ]
        verdict, wait, extra = self._call("begin", lambda: self._begin(keys=keys, args=args))
        if verdict == "duplicate":
            return Admission("duplicate", done_as=str(extra))
        since = float(extra) / 1000 if verdict in ("claimed", "retry") else None
        return Admission(verdict, max(0, int(wait)) / 1000, since)

    def renew(self, mention: Sequence[str], author: Sequence[str], token: str) -> bool:
        """See :meth:`TurnGuards.renew`."""
        lim = self.limits
        keys = [self.key("claim", mention[-1]), *(self.key("cool", a) for a in author)]
        args: list[str | int] = [token, _ms(lim.claim_ttl), round(lim.cooldown * 1000)]
        return bool(self._call("renew", lambda: self._renew(keys=keys, args=args)))

    def finish(
        self,
        mention: Sequence[str],
        author: Sequence[str],
        token: str,
        verdict: str = "answered",
        replies: int = 0,
    ) -> bool:
        """See :meth:`TurnGuards.finish`."""
        lim = self.limits
        keys = [
            self.key("claim", mention[-1]),
            self.key("tried", mention[-1]),
            self.key("replies"),
            *(self.key("done", m) for m in mention),
            *(self.key("cool", a) for a in author),
        ]
        counted = min(replies, lim.max_replies or 0)
        args: list[str | int] = [
            token,
            verdict,
            counted,
            round(lim.cooldown * 1000),
            _ms(lim.window),
            _ms(lim.dedupe_ttl),
            len(mention),
        ]
        return bool(self._call("finish", lambda: self._finish(keys=keys, args=args)))

    def release(self, mention: Sequence[str], author: Sequence[str], token: str) -> None:
        """See :meth:`TurnGuards.release`."""
        keys = [self.key("claim", mention[-1]), *(self.key("cool", a) for a in author)]
        self._call("release", lambda: self._release(keys=keys, args=[token]))

    def done(self, mention: Sequence[str], verdict: str = "answered") -> None:
        """See :meth:`TurnGuards.done`."""
        ttl = _ms(self.limits.dedupe_ttl)

        def run() -> None:
            pipe = self._redis.pipeline(transaction=True)
            for m in mention:
                pipe.set(self.key("done", m), verdict, px=ttl)
            pipe.execute()

        self._call("done", run)

    def pause(self, seconds: float) -> float:
        """See :meth:`TurnGuards.pause`."""
        got = self._call(
            "pause", lambda: self._pause(keys=[self.key("pause")], args=[_ms(seconds)])
        )
        return max(0, int(got)) / 1000

    def paused_for(self) -> float:
        """See :meth:`TurnGuards.paused_for`."""
        got = self._call("pause check", lambda: self._redis.pttl(self.key("pause")))
        return max(0, int(got)) / 1000

    def close(self) -> None:
        """Release the connection pool."""
        self._redis.close()
