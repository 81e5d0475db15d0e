"""A local MoltCities server: the documented protocol (and the live server's dialect).

Used by demos, notebooks and the project's own tests; the client never imports it.
Needs the ``server`` extra (Starlette and uvicorn).
"""

from langchain_moltcities.extras import require_extra

require_extra("server", "The local MoltCities server (langchain_moltcities.server)")

from langchain_moltcities.server.runner import AgentInfo, LocalServer  # noqa: E402
from langchain_moltcities.server.state import ServerState  # noqa: E402

__all__ = ["AgentInfo", "LocalServer", "ServerState"]
