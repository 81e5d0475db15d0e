"""The Redis store: each agent's state under its own keys, written behind in batches.

``MoltCitiesClient(state="redis://host:6379/0")``. Same semantics as the SQLite store: reads
come from the in-memory mirror loaded at start, writes are queued without I/O and sent by a
worker thread every ``flush_interval`` seconds (or ``batch_size`` writes) in one MULTI/EXEC.

Keys, all under one hash tag per agent (``moltcities:{<agent>}:...``) so that a Redis Cluster
keeps an agent on one slot and each agent's part of a batch is one transaction (the store-wide
index, agent id "", has a tag of its own, ``{~index}``):

- ``vals``: a hash of named values (cursor, subscriptions...);
- ``ids:<kind>`` (hash id -> value) and ``ord:<kind>`` (sorted set id -> order), bounded by
  :data:`KIND_CAPACITY` (the oldest trimmed in the same transaction);
- every key expires ``ttl`` seconds after the agent's last write (default 30 days), so an
  identity that is gone leaves nothing behind for ever.

Redis down: writes stay queued in memory (bounded) and are sent when it answers again;
``flush`` raises a :class:`StateError` that names the server and what to do.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from langchain_moltcities.state.base import KIND_CAPACITY, AgentSnapshot, StateError
from langchain_moltcities.state.writer import Batch, BatchWriter, WrittenBehind

if TYPE_CHECKING:
    import redis as redis_lib

__all__ = ["RedisStore", "agent_key", "redact_url"]

_log = logging.getLogger("langchain_moltcities.state")

# Drop the oldest ids past the bound, from the order and the values alike, in chunks (Lua's
# unpack has a stack limit). KEYS: ord, ids. ARGV: capacity.
_TRIM = """
local excess = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[1])
while excess > 0 do
  local n = math.min(excess, 1000)
  local old = redis.call('ZRANGE', KEYS[1], 0, n - 1)
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - 1)
  redis.call('HDEL', KEYS[2], unpack(old))
  excess = excess - n
end
return 0
"""

# Writes kept while Redis is unreachable, at most; past that the oldest are dropped (logged).
MAX_PENDING_OPS = 200_000


def redact_url(url: str) -> str:
    """The URL without its password (it may sit in logs, errors and reprs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


def agent_key(prefix: str, agent_id: str, *rest: str) -> str:
    """``prefix:{agent_id}:rest...``: the braces are a Cluster hash tag (one slot per agent)."""
    # An empty tag ("{}") is no tag to a Cluster: the key would hash whole, and a transaction
    # over the store-wide index (agent id "") would span slots.
    safe = agent_id.replace("{", "(").replace("}", ")") or "~index"
    return ":".join((prefix, "{" + safe + "}", *rest))


class RedisStore(WrittenBehind):
    """Agents' state on a Redis (or Valkey) server; one connection pool per store."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "moltcities",
        ttl: float | None = 30 * 24 * 3600,
        flush_interval: float = 0.05,
        batch_size: int = 500,
        connect_timeout: float = 5.0,
    ) -> None:
        try:
            import redis as redis_lib
        except ImportError:
            raise StateError(
                "state=redis://... needs the redis package: "
                'pip install "langchain-moltcities[redis]"'
            ) from None
        self.location = redact_url(url)
        self.prefix, self.ttl = prefix, ttl
        self.flush_interval, self.batch_size = flush_interval, batch_size
        self._errors: tuple[type[BaseException], ...] = (redis_lib.RedisError, OSError)
        try:
            self._redis: redis_lib.Redis = redis_lib.Redis.from_url(
                url,
                decode_responses=True,
                socket_connect_timeout=connect_timeout,
                socket_timeout=max(connect_timeout, 5.0),
                health_check_interval=10,
            )
            self._redis.ping()
        except ValueError as exc:
            raise StateError(
                f"state {self.location}: not a valid Redis URL ({exc}); give one like "
                "redis://localhost:6379/0"
            ) from None
        except self._errors as exc:
            raise self._unreachable(exc) from None
        self._trim = self._redis.register_script(_TRIM)
        self._retry: Batch = []  # batches Redis did not take yet
        self._last_order = 0
        self._error: BaseException | None = None
        self._closed = False
        self._writer = BatchWriter(
            self._write,
            name="moltcities-state-redis",
            flush_interval=flush_interval,
            batch_size=batch_size,
            # Held-back writes are retried even when nothing new comes.
            retry_after=lambda: max(self.flush_interval, 0.2) if self._retry else None,
            on_exit=self._report_unsent,
        )

    def __repr__(self) -> str:
        return f"RedisStore({self.location!r})"

    def _unreachable(self, exc: BaseException) -> StateError:
        return StateError(
            f"state {self.location}: Redis does not answer ({type(exc).__name__}: "
            f"{redact_url(str(exc))}); start it or check the URL"
        )

    def _key(self, agent_id: str, *rest: str) -> str:
        return agent_key(self.prefix, agent_id, *rest)

    # ------------------------------------------------------------------ the interface

    def load(self, agent_id: str) -> AgentSnapshot:
        """What is stored for ``agent_id``."""
        snap = AgentSnapshot()
        try:
            pipe = self._redis.pipeline(transaction=True)
            pipe.hgetall(self._key(agent_id, "vals"))
            for kind in KIND_CAPACITY:
                pipe.zrange(self._key(agent_id, "ord", kind), 0, -1)
                pipe.hgetall(self._key(agent_id, "ids", kind))
            replies: list[Any] = pipe.execute()
        except self._errors as exc:
            raise self._unreachable(exc) from None
        snap.values = dict(replies[0])
        for i, kind in enumerate(KIND_CAPACITY):
            order, values = replies[1 + 2 * i], replies[2 + 2 * i]
            if order:
                snap.sets[kind] = {item: values.get(item, "") for item in order}
        return snap

    def _failed(self, error: BaseException) -> str:
        return (
            f"writing failed ({error}); the writes are kept in memory and sent when Redis "
            "answers again: check that it is running"
        )

    def close(self) -> None:
        """Flush (as far as Redis answers), stop the writer, close the connections."""
        if self._closed:
            return
        self._closed = True
        self._writer.stop()
        self._redis.close()

    # ------------------------------------------------------------------ the writer

    def _report_unsent(self) -> None:
        if self._retry:
            _log.error(
                "state %s: closed with %d writes Redis never took",
                self.location,
                sum(len(ops) for _, ops in self._retry),
            )

    def _order(self) -> int:
        # Microseconds, strictly increasing: the order of ids across batches and restarts.
        self._last_order = max(self._last_order + 1, time.time_ns() // 1000)
        return self._last_order

    def _write(self, batch: Batch) -> BaseException | None:
        pending = self._retry + batch
        if not pending:
            return None
        # One transaction per agent: each agent's keys share one Cluster slot, two agents'
        # need not (a transaction spanning slots fails on a Cluster).
        by_agent: dict[str, Batch] = {}
        for item in pending:
            by_agent.setdefault(item[0], []).append(item)
        failed: Batch = []
        error: BaseException | None = None
        for group in by_agent.values():
            exc = self._write_one(group)
            if exc is not None:
                failed += group
                error = exc
        if error is not None:
            self._hold_back(failed, error)
            return error
        if self._error is not None:
            _log.warning("state %s: Redis answers again; held-back writes sent", self.location)
        self._retry, self._error = [], None
        return None

    def _write_one(self, pending: Batch) -> BaseException | None:
        touched: set[tuple[str, str]] = set()
        keys: set[str] = set()
        pipe = self._redis.pipeline(transaction=True)
        for agent, ops in pending:
            vals = self._key(agent, "vals")
            for op in ops:
                if op[0] == "set":
                    keys.add(vals)
                    if op[2] is None:
                        pipe.hdel(vals, op[1])
                    else:
                        pipe.hset(vals, op[1], op[2])
                elif op[0] == "add" and len(op) == 4:
                    ords, ids = self._key(agent, "ord", op[1]), self._key(agent, "ids", op[1])
                    pipe.zadd(ords, {op[2]: self._order()})
                    pipe.hset(ids, op[2], op[3] or "")
                    touched.add((agent, op[1]))
                    keys.update((ords, ids))
                elif op[0] == "discard":
                    ords, ids = self._key(agent, "ord", op[1]), self._key(agent, "ids", op[1])
                    pipe.zrem(ords, op[2] or "")
                    pipe.hdel(ids, op[2] or "")
        for agent, kind in touched:
            self._trim(
                keys=[self._key(agent, "ord", kind), self._key(agent, "ids", kind)],
                args=[KIND_CAPACITY.get(kind, 10_000)],
                client=pipe,
            )
        if self.ttl is not None:
            for key in keys:
                pipe.pexpire(key, int(self.ttl * 1000))
        try:
            pipe.execute()
        except self._errors as exc:
            return exc
        return None

    def _hold_back(self, pending: Batch, exc: BaseException) -> None:
        if self._error is None:
            _log.error(
                "state %s: writing failed (%s); writes are kept and retried",
                self.location,
                redact_url(str(exc)),
            )
        self._error = exc
        total = sum(len(ops) for _, ops in pending)
        while total > MAX_PENDING_OPS and len(pending) > 1:
            total -= len(pending.pop(0)[1])
            _log.error("state %s: too many writes held back; oldest dropped", self.location)
        self._retry = pending
