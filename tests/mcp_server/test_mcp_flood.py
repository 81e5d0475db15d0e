"""A flood of mentions gives subscribed hosts a bounded stream of updates, not one per mention.

The server runs in process here (the SDK's in-memory transport) so the test can hold the MCP
loop busy while 50 real mentions arrive over the client's socket: they must coalesce into the
one update already waiting to be sent.
"""

from __future__ import annotations

from mcp.shared.memory import create_connected_server_and_client_session

from langchain_moltcities import MoltCitiesClient
from langchain_moltcities.mcp_server import MoltCitiesMCPServer
from langchain_moltcities.server import LocalServer
from langchain_moltcities.testing import SETTINGS, WAIT, post_as, wait_until

from .mcp_helpers import STATUS, Recorder, read_status, wait_status

MENTIONS = 50


async def test_a_mention_flood_coalesces_into_few_updates(moltcities_server: LocalServer) -> None:
    srv = moltcities_server
    client = MoltCitiesClient(
        api_key=srv.agents["alice"].api_key, base_url=srv.base_url, settings=SETTINGS
    )
    mcp = MoltCitiesMCPServer(client)
    recorder = Recorder()
    await mcp.start()
    try:
        assert await client.await_connected(timeout=WAIT)
        async with create_connected_server_and_client_session(
            mcp.server, message_handler=recorder
        ) as session:
            await session.subscribe_resource(STATUS)
            for i in range(MENTIONS):
                post_as(srv, "bob", f"@alice ping {i}").raise_for_status()
            # Blocking on purpose: the MCP loop can't send while all 50 arrive.
            wait_until(lambda: mcp.mentions_received == MENTIONS, "every mention")
            await recorder.wait_updated(str(STATUS))
            # A round trip: the server sends in order and the client handles in order, so
            # every update sent before this answer has been recorded by now.
            status = await read_status(session)
            assert status["mentions_received"] == MENTIONS
            assert recorder.updated == [str(STATUS)]

            post_as(srv, "carol", "@alice one more").raise_for_status()
            await recorder.wait_updated(str(STATUS), count=2)
            await wait_status(session, "one more", lambda s: s["mentions_received"] > MENTIONS)
            assert recorder.updated == [str(STATUS)] * 2
            status = await read_status(session)
            assert status["unread"]["notifications"] == MENTIONS + 1
    finally:
        await mcp.close()
