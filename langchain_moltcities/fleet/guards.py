"""The mention responder's guards shared by every worker of a fleet: claims, cooldowns, caps,
and the chat pause after a 429.

A turn is admitted by :meth:`TurnGuards.begin`, one atomic step that checks, in order: the
mention was answered (``duplicate``); another worker's turn holds it (``busy``: wait); the
fleet's chat is paused after a 429 (``paused``: wait); a previous attempt began and never
finished (``retry``: the caller settles it from the chat); its author was answered within
``cooldown`` (``cooldown``: skip) or is in a turn right now (``busy`` with no cooldown); the
turn or reply cap of the ``window`` is reached (``cap``: wait). Otherwise the turn is
``claimed``: a claim on the mention (``claim_ttl``, renewed while the turn runs), its author
marked, the turn counted. :meth:`~TurnGuards.finish` marks the mention done (``dedupe_ttl``)
and restarts the author's cooldown; :meth:`~TurnGuards.release` gives a claim back for a
later retry (a turn refused by the rate limit).

**Delivery: at least once, settled from the chat.** The claim is taken before the reply is
posted and the mention is marked done after. A worker killed in between leaves a ``tried``
mark with the time its turn began; whoever takes the mention next (its stream entry is
re-claimed after the visibility timeout) gets ``retry`` and looks in the Town Square for a
reply after that time (:mod:`.responder`): found, the mention is done; not found, the turn
runs again. Claiming *after* the post instead would let two workers both answer; marking done
*before* it (at most once) would lose the mention of every worker killed mid-turn.

Two interchangeable backends: :class:`MemoryTurnGuards` (one process, in memory) and
:class:`RedisTurnGuards` (every key under the identity's hash tag ``{identity}``, each with a
TTL, every step one Lua script on Redis's clock, so the workers' clocks never disagree).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from langchain_moltcities.errors import InvalidArgumentError, MoltCitiesError
from langchain_moltcities.state.redis import agent_key, redact_url

if TYPE_CHECKING:
    import redis as redis_lib

__all__ = [
    "Admission",
    "GuardLimits",
    "MemoryTurnGuards",
    "RedisTurnGuards",
    "SharedGuardsError",
    "TurnGuards",
    "Verdict",
]

Verdict = Literal["claimed", "retry", "duplicate", "cooldown", "busy", "paused", "cap"]


class SharedGuardsError(MoltCitiesError):
    """The shared guards could not be reached (Redis down): no turn is admitted meanwhile."""


@dataclass(frozen=True)
class Admission:
    """What :meth:`TurnGuards.begin` decided. ``wait``: seconds worth waiting before asking
    again (``busy``, ``paused``, ``cap``). ``since``: epoch seconds the turn (or the earlier,
    unfinished attempt, for ``retry``) began. ``verdict`` of a done mention: ``duplicate``,
    and ``done_as`` says how it was handled."""

    verdict: Verdict
    wait: float = 0.0
    since: float | None = None
    done_as: str | None = None


@dataclass(frozen=True)
class GuardLimits:
    """The rules, as :class:`~langchain_moltcities.mentions.MentionGuard` has them, plus how
    long a claim lives without renewal and how long a done mention is remembered."""

    cooldown: float = 30.0
    max_turns: int = 5
    window: float = 60.0
    max_replies: int | None = None
    claim_ttl: float = 30.0
    dedupe_ttl: float = 24 * 3600.0

    def __post_init__(self) -> None:
        if self.cooldown < 0 or self.window <= 0 or self.max_turns < 1:
            raise InvalidArgumentError("cooldown must be >= 0, window > 0 and max_turns >= 1")
        if self.max_replies is not None and self.max_replies < 1:
            raise InvalidArgumentError("max_replies must be >= 1 (or None for no reply cap)")
        if self.claim_ttl <= 0 or self.dedupe_ttl <= 0:
            raise InvalidArgumentError("claim_ttl and dedupe_ttl must be > 0 seconds")


class TurnGuards(Protocol):
    """What a fleet responder needs from its shared guards (thread-safe, blocking, fast).

    ``mention`` is the ids one mention is known by (its own, ``chat:<message id>``); the last
    one names its claim. ``author`` is the keys its author is known by (id, handle).
    """

    limits: GuardLimits

    def begin(self, mention: Sequence[str], author: Sequence[str], token: str) -> Admission:
        """Admit a turn for this mention under ``token``, or say why not."""
        ...

    def renew(self, mention: Sequence[str], author: Sequence[str], token: str) -> bool:
        """Keep the claim alive while the turn runs; False if it was lost."""
        ...

    def finish(
        self,
        mention: Sequence[str],
        author: Sequence[str],
        token: str,
        verdict: str = "answered",
        replies: int = 0,
    ) -> bool:
        """The turn ended: the mention is done, the author's cooldown restarts, ``replies``
        count toward the reply cap. False if the claim had been lost meanwhile."""
        ...

    def release(self, mention: Sequence[str], author: Sequence[str], token: str) -> None:
        """Give the claim back unfinished: the next ``begin`` gets ``retry``."""
        ...

    def done(self, mention: Sequence[str], verdict: str = "answered") -> None:
        """Mark the mention done now (its reply is out), whatever the turn does next."""
        ...

    def pause(self, seconds: float) -> float:
        """Nobody posts for ``seconds`` (a 429's ``retry_after``); never shortens a pause.
        Returns the pause now in force, in seconds."""
        ...

    def paused_for(self) -> float:
        """Seconds the fleet's chat is still paused (0: not paused)."""
        ...


def new_token(name: str) -> str:
    """A claim token: who (for people reading Redis) and a random part (for compare-and-set)."""
    return f"{name[:64]}:{secrets.token_hex(8)}"


def _safe(part: str) -> str:
    # Ids and handles come from the server and peers: bounded in a key.
    return part if len(part) <= 128 else "h:" + hashlib.sha256(part.encode()).hexdigest()


# ---------------------------------------------------------------------------- in memory


class MemoryTurnGuards:
    """The guards for one process (tests, a single worker): the same rules, in memory."""

    def __init__(
        self, limits: GuardLimits | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.limits = limits or GuardLimits()
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, tuple[str, float]] = {}  # key -> (value, expires at)
        self._turns: list[float] = []
        self._replies: list[float] = []

    def _get(self, key: str, now: float) -> str | None:
        got = self._keys.get(key)
        if got is None or got[1] <= now:
            self._keys.pop(key, None)
            return None
        return got[0]

    def _ttl(self, key: str, now: float) -> float:
        got = self._keys.get(key)
        return max(0.0, got[1] - now) if got is not None else 0.0

    def _set(self, key: str, value: str, ttl: float, now: float) -> None:
        self._keys[key] = (value, now + ttl)

    def begin(self, mention: Sequence[str], author: Sequence[str], token: str) -> Admission:
        """See :meth:`TurnGuards.begin`."""
        lim = self.limits
        with self._lock:
            now = self._clock()
            for k in mention:
                if (v := self._get("done:" + k, now)) is not None:
                    return Admission("duplicate", done_as=v)
            claim = "claim:" + mention[-1]
            holder = self._get(claim, now)
            if holder is not None and holder != token:
                return Admission("busy", self._ttl(claim, now))
            if (left := self._ttl("pause", now)) > 0:
                return Admission("paused", left)
            tried = self._get("tried:" + mention[-1], now)
            if tried is None:
                for a in author:
                    v = self._get("cool:" + a, now)
                    if v is not None and v != token:
                        verdict: Verdict = "cooldown" if lim.cooldown > 0 else "busy"
                        return Admission(verdict, self._ttl("cool:" + a, now))
                self._turns = [t for t in self._turns if now - t < lim.window]
                self._replies = [t for t in self._replies if now - t < lim.window]
                wait = 0.0
                if len(self._turns) >= lim.max_turns:
                    wait = self._turns[0] + lim.window - now
                if lim.max_replies is not None and len(self._replies) >= lim.max_replies:
                    at = self._replies[len(self._replies) - lim.max_replies]
                    wait = max(wait, at + lim.window - now)
                if wait > 0:
                    return Admission("cap", wait)
                self._turns.append(now)
                self._set("tried:" + mention[-1], repr(now), lim.dedupe_ttl, now)
            self._set(claim, token, lim.claim_ttl, now)
            for a in author:
                self._set("cool:" + a, token, max(lim.cooldown, lim.claim_ttl), now)
            if tried is not None:
                return Admission("retry", since=float(tried))
            return Admission("claimed", since=now)

    def renew(self, mention: Sequence[str], author: Sequence[str], token: str) -> bool:
        """See :meth:`TurnGuards.renew`."""
        lim = self.limits
        with self._lock:
            now = self._clock()
            claim = "claim:" + mention[-1]
            if self._get(claim, now) != token:
                return False
            self._set(claim, token, lim.claim_ttl, now)
            for a in author:
                if self._get("cool:" + a, now) == token:
                    self._set("cool:" + a, token, max(lim.cooldown, lim.claim_ttl), now)
            return True

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
        with self._lock:
            now = self._clock()
            claim = "claim:" + mention[-1]
            mine = self._get(claim, now) == token
            for k in mention:
                self._set("done:" + k, verdict, lim.dedupe_ttl, now)
            if mine:
                del self._keys[claim]
            self._keys.pop("tried:" + mention[-1], None)
            for a in author:
                v = self._get("cool:" + a, now)
                if lim.cooldown > 0 and v in (None, token, "done"):
                    self._set("cool:" + a, "done", lim.cooldown, now)
                elif lim.cooldown == 0 and v == token:
                    del self._keys["cool:" + a]
            self._replies += [now] * min(replies, lim.max_replies or 0)
            # Forget what expired, so a long-running process stays small.
            for key in [k for k, (_, until) in self._keys.items() if until <= now]:
                del self._keys[key]
            return mine

    def release(self, mention: Sequence[str], author: Sequence[str], token: str) -> None:
        """See :meth:`TurnGuards.release`."""
        with self._lock:
            now = self._clock()
            for key in ["claim:" + mention[-1], *("cool:" + a for a in author)]:
                if self._get(key, now) == token:
                    del self._keys[key]

    def done(self, mention: Sequence[str], verdict: str = "answered") -> None:
        """See :meth:`TurnGuards.done`."""
        with self._lock:
            now = self._clock()
            for k in mention:
                self._set("done:" + k, verdict, self.limits.dedupe_ttl, now)

    def pause(self, seconds: float) -> float:
        """See :meth:`TurnGuards.pause`."""
        with self._lock:
            now = self._clock()
            if self._ttl("pause", now) < seconds:
                self._set("pause", "429", seconds, now)
            return self._ttl("pause", now)

    def paused_for(self) -> float:
        """See :meth:`TurnGuards.paused_for`."""
        with self._lock:
            return self._ttl("pause", self._clock())


# ---------------------------------------------------------------------------- on Redis

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
        return agent_key(self.prefix, self.identity, "resp", *(_safe(r) for r in rest))

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
