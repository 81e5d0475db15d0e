"""The holder lease: at most one process at a time holds an agent identity's sockets.

MoltCities allows one socket per agent and channel, so of N worker processes sharing an
identity exactly one (the holder) may connect; the others stand by. The lease is a Redis key
``moltcities:{<agent>}:holder`` whose value is the holder's random token:

- acquire: ``SET key token NX PX ttl`` (only if nobody holds it);
- renew: a Lua compare-and-set (``PEXPIRE`` only if the value is still our token), every
  ``renew_every`` seconds (a third of the lease by default);
- release: a Lua compare-and-delete, so a clean stop hands over at once.

A holder whose renewal fails for any reason (the key expired or was taken, Redis does not
answer, the renewal came too late) stops holding at once, and ``holding`` also turns False by
itself once the lease could have expired since the last renewal was sent: a holder that cannot
prove it still holds never acts as one, so two holders never fight. When a holder dies (even
``kill -9``) its key expires within ``ttl`` and a standby takes over on its next try.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from langchain_moltcities.errors import InvalidArgumentError, MoltCitiesError
from langchain_moltcities.state.redis import agent_key, redact_url

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = ["HolderLease"]

_log = logging.getLogger("langchain_moltcities.fleet")

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class HolderLease:
    """One process's claim on an identity. Use :meth:`run` (or the three steps by hand)."""

    def __init__(
        self,
        url: str,
        identity: str,
        *,
        ttl: float = 5.0,
        renew_every: float | None = None,
        prefix: str = "moltcities",
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        if ttl <= 0:
            raise InvalidArgumentError(f"lease ttl must be positive seconds, not {ttl!r}")
        renew = ttl / 3 if renew_every is None else renew_every
        if not 0 < renew < ttl:
            raise InvalidArgumentError(
                f"renew_every ({renew!r} s) must be positive and shorter than the lease ({ttl} s)"
            )
        try:
            import redis.asyncio as aioredis
        except ImportError:
            raise MoltCitiesError(
                "the holder lease needs the redis package: "
                'pip install "langchain-moltcities[redis]"'
            ) from None
        self.identity, self.ttl, self.renew_every = identity, ttl, renew
        self.key = agent_key(prefix, identity, "holder")
        self.location = redact_url(url)
        # Random, and says who: an operator reading the key sees which host and process holds.
        self.token = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(8)}"
        self.on_change = on_change
        self._redis: aioredis.Redis = aioredis.Redis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=min(ttl, 5.0),
            socket_timeout=min(ttl, 5.0),
        )
        self._renew = self._redis.register_script(_RENEW)
        self._release = self._redis.register_script(_RELEASE)
        self._errors: tuple[type[BaseException], ...] = (aioredis.RedisError, OSError)
        self._valid_until = 0.0  # monotonic: the lease may have expired after this
        self._reported = False  # what on_change last said
        self._not_before = 0.0  # monotonic: step_down's pause, no acquiring before this

    def __repr__(self) -> str:
        return f"HolderLease({self.identity!r}, {self.location!r}, holding={self.holding})"

    @property
    def holding(self) -> bool:
        """True only while this process provably holds the lease."""
        return time.monotonic() < self._valid_until

    def _set(self, valid_until: float) -> None:
        self._valid_until = valid_until
        now = self.holding
        if now != self._reported:
            self._reported = now
            _log.info(
                "lease %s: %s (%s)", self.key, "holding" if now else "not holding", self.token
            )
            if self.on_change is not None:
                self.on_change(now)

    async def try_acquire(self) -> bool:
        """Take the lease if nobody holds it; True if we hold it now."""
        if self.holding:
            return await self.renew()
        sent = time.monotonic()
        try:
            got = await self._redis.set(self.key, self.token, nx=True, px=int(self.ttl * 1000))
        except self._errors as exc:
            _log.warning("lease %s: Redis does not answer (%s)", self.key, type(exc).__name__)
            return False
        if got:
            self._set(sent + self.ttl)
        return bool(got)

    async def renew(self) -> bool:
        """Extend our lease; on any failure stop holding at once and return False."""
        sent = time.monotonic()
        try:
            ok = await self._renew(keys=[self.key], args=[self.token, int(self.ttl * 1000)])
        except self._errors as exc:
            _log.warning("lease %s: renewal failed (%s)", self.key, type(exc).__name__)
            ok = 0
        if ok and time.monotonic() < sent + self.ttl:
            self._set(sent + self.ttl)
            return True
        self._set(0.0)
        return False

    async def release(self) -> None:
        """Give the lease up (only if it is still ours), so a standby takes over at once."""
        self._set(0.0)
        try:
            await self._release(keys=[self.key], args=[self.token])
        except self._errors as exc:
            _log.warning("lease %s: release failed (%s); it expires", self.key, exc)

    async def step_down(self, pause: float) -> None:
        """Release, and try to acquire again only after ``pause`` seconds (e.g. MoltCities
        said another connection took the agent's socket: taking it back would fight)."""
        self._not_before = time.monotonic() + pause
        await self.release()

    async def run(self, stop: asyncio.Event) -> None:
        """Hold when we can, renew while we hold, stand by otherwise; release on ``stop``."""
        try:
            while not stop.is_set():
                if self.holding:
                    await self.renew()
                elif self._reported:
                    # Our renewals came too late (a stalled loop): the lease may be someone
                    # else's by now. Say so, drop our key if it is still there, start over.
                    await self.release()
                elif time.monotonic() >= self._not_before:
                    await self.try_acquire()
                # A standby tries as often as a holder renews: takeover within ttl + renew_every.
                deadline = self.renew_every
                if self.holding:
                    deadline = min(deadline, max(0.0, self._valid_until - time.monotonic()))
                try:
                    await asyncio.wait_for(stop.wait(), timeout=deadline)
                except TimeoutError:
                    pass
        finally:
            await self.release()

    async def aclose(self) -> None:
        """Release what the lease holds open."""
        await self.release()
        await self._redis.aclose()
