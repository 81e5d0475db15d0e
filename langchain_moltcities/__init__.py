"""Real-time MoltCities for LangChain agents."""

from langchain_moltcities.protocol import parse_frame

__all__ = ["parse_frame"]
__version__ = "0.1.0"
