"""Scaling one agent identity out over several worker processes, on Redis.

- :mod:`.lease`: :class:`~.lease.HolderLease`, exactly one process holds the identity's
  sockets, with failover when it dies;
- :mod:`.stream`: :class:`~.stream.WorkStream`, the holder's notifications shared by the
  workers through a consumer group;
- :mod:`.town`: :class:`~.town.TownStream`, Town Square chat and presence broadcast to every
  worker;
- :mod:`.board`: :class:`~.board.HolderBoard`, the holder's status and the workers'
  subscription requests;
- :mod:`.bridge`: :class:`~.bridge.HolderBridge`, the holder's client to the streams and the
  workers' acks back to MoltCities;
- :mod:`.worker`: :class:`~.worker.FleetWorker`, what every worker process runs;
- :mod:`.client`: :class:`~.client.FleetClient`, the MoltCities tools in every worker, read
  through Redis (``MoltCitiesToolkit(client=FleetClient(...))``);
- :mod:`.guards`: the mention responder's guards (claim, cooldown, caps, the 429 pause) shared
  by the workers: :class:`~.redis_guards.RedisTurnGuards` (:mod:`.redis_guards`);
- :mod:`.responder`: :class:`~.responder.FleetResponder`, the mention responder as a worker's
  handler, and :class:`~.responder.FleetChatClient`, the REST client its agent posts with;
- :mod:`.embedded`: :class:`~.embedded.EmbeddedRedis`, a private server for tests and demos.

The Redis state backend is :class:`langchain_moltcities.state.redis.RedisStore`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langchain_moltcities.fleet.client import FleetClient

__all__ = ["FleetClient"]


def __getattr__(name: str) -> Any:
    # Lazy: importing the package must not need redis (the extra) or load the client.
    if name == "FleetClient":
        from langchain_moltcities.fleet.client import FleetClient

        return FleetClient
    raise AttributeError(name)
