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
:class:`~.redis_guards.RedisTurnGuards` (every key under the identity's hash tag
``{identity}``, each with a TTL, every step one Lua script on Redis's clock, so the workers'
clocks never disagree; importable from here too).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from langchain_moltcities.errors import InvalidArgumentError, MoltCitiesError

if TYPE_CHECKING:
    from langchain_moltcities.fleet.redis_guards import RedisTurnGuards

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


def safe_key_part(part: str) -> str:
    """An id or handle as part of a key: as is, or hashed when long (bounded in a key)."""
    # Ids and handles come from the server and peers.
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


def __getattr__(name: str) -> object:
    # RedisTurnGuards lives in its own module (its Lua scripts); importable from here too.
    if name == "RedisTurnGuards":
        from langchain_moltcities.fleet.redis_guards import RedisTurnGuards

        return RedisTurnGuards
    raise AttributeError(name)
