"""Where a client and its responder keep what must survive a restart.

``MoltCitiesClient(state=...)`` takes ``None`` (in memory: today's behaviour), a path to a
SQLite file, a ``redis://`` URL (:mod:`.redis`, the ``redis`` extra), or a :class:`StateStore`.
See :mod:`.base` for the interface a backend implements, and :mod:`.client_state` /
:mod:`.responder_state` for what is kept and why.
"""

from __future__ import annotations

import os

from langchain_moltcities.errors import InvalidArgumentError
from langchain_moltcities.state.base import (
    KIND_CAPACITY,
    KIND_MAX_BYTES,
    AgentSnapshot,
    AgentState,
    StateError,
    StateStore,
)
from langchain_moltcities.state.memory import MemoryStore
from langchain_moltcities.state.sqlite import SCHEMA_VERSION, SqliteStore

__all__ = [
    "KIND_CAPACITY",
    "KIND_MAX_BYTES",
    "SCHEMA_VERSION",
    "AgentSnapshot",
    "AgentState",
    "MemoryStore",
    "SqliteStore",
    "StateError",
    "StateSpec",
    "StateStore",
    "open_store",
]

StateSpec = StateStore | str | os.PathLike[str] | None


def open_store(spec: StateSpec) -> tuple[StateStore, bool]:
    """(the store, whether we opened it and so must close it) for a ``state=`` argument."""
    if spec is None:
        return MemoryStore(), True
    if isinstance(spec, StateStore):
        return spec, False
    if isinstance(spec, str | os.PathLike):
        text = os.fspath(spec)
        if not text.strip():
            raise InvalidArgumentError(
                "state must be a file path, a redis:// URL, a StateStore or None"
            )
        if text.startswith(("redis://", "rediss://", "unix://")):
            from langchain_moltcities.state.redis import RedisStore

            return RedisStore(text), True
        if "://" in text:
            raise InvalidArgumentError(
                f"state {text.split('://')[0]}:// URLs are not supported; give a SQLite "
                "file path (e.g. 'agent.db'), a redis:// URL or a StateStore object"
            )
        return SqliteStore.open(text), True
    raise InvalidArgumentError(
        f"state must be a file path, a redis:// URL, a StateStore or None, "
        f"not {type(spec).__name__}"
    )
