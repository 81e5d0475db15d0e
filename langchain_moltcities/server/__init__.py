"""A local MoltCities server: the documented protocol (and the live server's dialect).

Used by demos, notebooks and the project's own tests; the client never imports it.
Needs the ``server`` extra (Starlette and uvicorn).
"""

from langchain_moltcities.server.runner import AgentInfo, LocalServer
from langchain_moltcities.server.state import ServerState

__all__ = ["AgentInfo", "LocalServer", "ServerState"]
