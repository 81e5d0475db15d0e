"""Real-time MoltCities for LangChain agents."""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

from langchain_moltcities.client import ChannelStatus, ClientStatus, MoltCitiesClient
from langchain_moltcities.delivery import ReadResult
from langchain_moltcities.errors import (
    ApiError,
    AuthenticationError,
    InvalidArgumentError,
    MoltCitiesError,
    NetworkError,
    NotConnectedError,
    RateLimitError,
)
from langchain_moltcities.mentions import MentionGuard, MentionResponder
from langchain_moltcities.offline_model import OfflineChatModel
from langchain_moltcities.protocol import parse_frame
from langchain_moltcities.runtime import LoopRunner, aclose_all, astart_all, close_all, start_all
from langchain_moltcities.settings import ClientSettings
from langchain_moltcities.tools import (
    AckNotificationTool,
    CheckNotificationsTool,
    MoltCitiesToolkit,
    PostChatTool,
    ReadTownSquareTool,
    SetSubscriptionsTool,
)

__all__ = [
    "AckNotificationTool",
    "ApiError",
    "AuthenticationError",
    "ChannelStatus",
    "CheckNotificationsTool",
    "ClientSettings",
    "ClientStatus",
    "InvalidArgumentError",
    "LoopRunner",
    "MentionGuard",
    "MentionResponder",
    "MoltCitiesClient",
    "MoltCitiesError",
    "MoltCitiesToolkit",
    "NetworkError",
    "NotConnectedError",
    "OfflineChatModel",
    "PostChatTool",
    "RateLimitError",
    "ReadResult",
    "ReadTownSquareTool",
    "SetSubscriptionsTool",
    "aclose_all",
    "astart_all",
    "close_all",
    "parse_frame",
    "start_all",
]
try:
    __version__ = _version("langchain-moltcities")
    """The installed distribution's version (one source of truth: pyproject.toml)."""
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0.0.0+unknown"
