"""The in-memory store: today's behaviour; nothing outlives the process.

One store object shared by two clients in turn (close one, start the next) does carry the
state over, which is handy in tests and notebooks.
"""

from __future__ import annotations

import copy
import threading

from langchain_moltcities.state.base import AgentSnapshot, Op, StateStore, apply_ops

__all__ = ["MemoryStore"]


class MemoryStore(StateStore):
    """Keeps each agent's state in this process only; the default."""

    persistent = False
    location = "memory"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._agents: dict[str, AgentSnapshot] = {}

    def load(self, agent_id: str) -> AgentSnapshot:
        """A copy of what is stored for ``agent_id``."""
        with self._lock:
            return copy.deepcopy(self._agents.get(agent_id, AgentSnapshot()))

    def submit(self, agent_id: str, ops: list[Op]) -> None:
        """Apply ``ops`` for ``agent_id``."""
        with self._lock:
            apply_ops(self._agents.setdefault(agent_id, AgentSnapshot()), ops)

    def flush(self, timeout: float = 10.0) -> None:
        """Nothing to wait for: changes apply at once."""
        return None

    def close(self) -> None:
        """Nothing to release."""
        return None

    def __repr__(self) -> str:
        return "MemoryStore()"
