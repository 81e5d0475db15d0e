"""langchain-tests' standard integration suite for every tool, over a FleetClient: the same
tools, fed through Redis by a holder (the client itself) and the local server's sockets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.tools import BaseTool
from langchain_tests.integration_tests import ToolsIntegrationTests

from langchain_moltcities.fleet import FleetClient
from langchain_moltcities.server import LocalServer
from langchain_moltcities.testing import SETTINGS, wait_until
from langchain_moltcities.tools import (
    AckNotificationTool,
    CheckNotificationsTool,
    PostChatTool,
    ReadTownSquareTool,
    SetSubscriptionsTool,
)

EXAMPLES: dict[type[BaseTool], dict[str, Any]] = {
    CheckNotificationsTool: {"event_types": ["mention", "inbox.message"], "limit": 5},
    ReadTownSquareTool: {"limit": 10},
    PostChatTool: {"message": "hello from a fleet worker"},
    SetSubscriptionsTool: {"events": ["mention", "inbox.message"]},
}


class _FleetIntegration(ToolsIntegrationTests):
    cls: type[BaseTool]
    client: FleetClient
    ack_id: str

    @pytest.fixture(autouse=True)
    def _fleet_client(self, moltcities_server: LocalServer, redis_url: str) -> Iterator[None]:
        srv = moltcities_server
        client = FleetClient(
            srv.agents["alice"].api_key, srv.base_url, redis_url=redis_url,
            identity=srv.agents["alice"].id, lease_ttl=1.0, settings=SETTINGS,
        )  # fmt: skip
        with client:
            wait_until(lambda: client.status().connected, "the fleet's holder to connect", 30)
            self.client = client
            if self.cls is AckNotificationTool:  # an id this worker's agent was shown
                srv.notify("alice", "inbox.message", {"preview": "to ack"})
                got: list[str] = []

                def shown() -> bool:
                    got.extend(n.id for n in client.read_notifications().items)
                    return bool(got)

                wait_until(shown, "a notification through the stream", 30)
                self.ack_id = got[0]
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


class TestCheckNotificationsFleet(_FleetIntegration):
    cls = CheckNotificationsTool


class TestReadTownSquareFleet(_FleetIntegration):
    cls = ReadTownSquareTool


class TestPostChatFleet(_FleetIntegration):
    cls = PostChatTool


class TestAckNotificationFleet(_FleetIntegration):
    cls = AckNotificationTool


class TestSetSubscriptionsFleet(_FleetIntegration):
    cls = SetSubscriptionsTool
