"""langchain-tests' standard suites for every tool; the integration ones over real sockets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.tools import BaseTool
from langchain_tests.integration_tests import ToolsIntegrationTests
from langchain_tests.unit_tests import ToolsUnitTests

from langchain_moltcities import MoltCitiesClient
from langchain_moltcities.server import LocalServer
from langchain_moltcities.testing import connected_client, wait_until
from langchain_moltcities.tools import (
    AckNotificationTool,
    CheckNotificationsTool,
    PostChatTool,
    ReadTownSquareTool,
    SetSubscriptionsTool,
)

# Constructing a tool needs a client but no connection: this one is never started.
OFFLINE_CLIENT = MoltCitiesClient(api_key="mc_" + "0" * 64, base_url="http://127.0.0.1:9")

EXAMPLES: dict[type[BaseTool], dict[str, Any]] = {
    CheckNotificationsTool: {"event_types": ["mention", "inbox.message"], "limit": 5},
    ReadTownSquareTool: {"limit": 10},
    PostChatTool: {"message": "hello from the standard tests"},
    AckNotificationTool: {"notification_id": "notif_example"},
    SetSubscriptionsTool: {"events": ["mention", "inbox.message"]},
}


class _Unit(ToolsUnitTests):
    cls: type[BaseTool]

    @property
    def tool_constructor(self) -> type[BaseTool]:
        return self.cls

    @property
    def tool_constructor_params(self) -> dict[str, Any]:
        return {"client": OFFLINE_CLIENT}

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return EXAMPLES[self.cls]


class _Integration(ToolsIntegrationTests):
    """Each test gets its own local server and a connected client for the tool."""

    cls: type[BaseTool]
    client: MoltCitiesClient
    ack_id: str

    @pytest.fixture(autouse=True)
    def _live_client(self, moltcities_server: LocalServer) -> Iterator[None]:
        # Autouse fixtures run before the suite's ``tool`` fixture, which reads the params.
        with connected_client(moltcities_server) as client:
            self.client = client
            if self.cls is AckNotificationTool:  # acks need an id this client received
                moltcities_server.notify("alice", "inbox.message", {"preview": "to ack"})
                wait_until(lambda: client.status().channels["personal"].pending, "a notification")
                self.ack_id = client.read_notifications().items[0].id
            yield

    @property
    def tool_constructor(self) -> type[BaseTool]:
        return self.cls

    @property
    def tool_constructor_params(self) -> dict[str, Any]:
        return {"client": self.client}

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        if self.cls is AckNotificationTool:
            return {"notification_id": self.ack_id}
        return EXAMPLES[self.cls]


class TestCheckNotificationsUnit(_Unit):
    cls = CheckNotificationsTool


class TestReadTownSquareUnit(_Unit):
    cls = ReadTownSquareTool


class TestPostChatUnit(_Unit):
    cls = PostChatTool


class TestAckNotificationUnit(_Unit):
    cls = AckNotificationTool


class TestSetSubscriptionsUnit(_Unit):
    cls = SetSubscriptionsTool


class TestCheckNotificationsIntegration(_Integration):
    cls = CheckNotificationsTool


class TestReadTownSquareIntegration(_Integration):
    cls = ReadTownSquareTool


class TestPostChatIntegration(_Integration):
    cls = PostChatTool


class TestAckNotificationIntegration(_Integration):
    cls = AckNotificationTool


class TestSetSubscriptionsIntegration(_Integration):
    cls = SetSubscriptionsTool
