"""Scaling one agent identity out over several processes, on Redis.

What exists: :class:`~.lease.HolderLease` (exactly one process holds an identity's sockets,
with failover when it dies) and :class:`~.embedded.EmbeddedRedis` (a private server for tests
and demos). The Redis state backend is :class:`langchain_moltcities.state.redis.RedisStore`.
"""
