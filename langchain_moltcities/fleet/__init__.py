"""Scaling one agent identity out over several worker processes, on Redis.

- :mod:`.lease`: :class:`~.lease.HolderLease`, exactly one process holds the identity's
  sockets, with failover when it dies;
- :mod:`.stream`: :class:`~.stream.WorkStream`, the holder's notifications shared by the
  workers through a consumer group;
- :mod:`.bridge`: :class:`~.bridge.HolderBridge`, the holder's client to the stream and the
  workers' acks back to MoltCities;
- :mod:`.worker`: :class:`~.worker.FleetWorker`, what every worker process runs;
- :mod:`.guards`: the mention responder's guards (claim, cooldown, caps, the 429 pause) shared
  by the workers: :class:`~.redis_guards.RedisTurnGuards` (:mod:`.redis_guards`);
- :mod:`.responder`: :class:`~.responder.FleetResponder`, the mention responder as a worker's
  handler, and :class:`~.responder.FleetChatClient`, the REST client its agent posts with;
- :mod:`.embedded`: :class:`~.embedded.EmbeddedRedis`, a private server for tests and demos.

The Redis state backend is :class:`langchain_moltcities.state.redis.RedisStore`.
"""
