"""Cluster awareness: every key of an identity hashes to one slot, so a Redis Cluster can
spread identities over its shards while each identity's scripts and transactions stay on one.

The slot is computed here (CRC16/XMODEM of the hash tag, mod 16384, as the Cluster spec says)
and checked against a real one-node Cluster, which also refuses any command that spans slots:
the whole fleet (lease, streams, scripts, the restart state) runs on it without one.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import redis
from langchain_core.tools import BaseTool

from langchain_moltcities import MoltCitiesToolkit
from langchain_moltcities.fleet import FleetClient
from langchain_moltcities.fleet.embedded import EmbeddedRedis
from langchain_moltcities.server.runner import LocalServer
from langchain_moltcities.testing import SETTINGS, post_as, wait_until


def crc16(data: bytes) -> int:
    """CRC16/XMODEM (polynomial 0x1021, initial 0), the Cluster's key hash."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def hash_tag(key: str) -> str | None:
    """What a Cluster hashes: the text between the first '{' and the next '}', if non-empty."""
    found = re.search(r"\{([^}]*)\}", key)
    return found.group(1) if found and found.group(1) else None


def slot(key: str) -> int:
    return crc16((hash_tag(key) or key).encode()) % 16384


def test_the_slot_function_matches_the_cluster_spec() -> None:
    assert crc16(b"123456789") == 0x31C3  # the spec's check value
    assert slot("foo") == 12182
    assert slot("{user1000}.following") == slot("{user1000}.followers")


def test_every_key_of_an_identity_is_in_one_slot_on_a_cluster(
    moltcities_server: LocalServer, redis_factory: Callable[..., EmbeddedRedis]
) -> None:
    srv = moltcities_server
    cluster = redis_factory(cluster=True)
    clients = {
        who: FleetClient(
            srv.agents[who].api_key,
            srv.base_url,
            redis_url=cluster.url,
            identity=srv.agents[who].id,
            name=f"{who}-w",
            lease_ttl=1.0,
            settings=SETTINGS,
        )
        for who in ("alice", "bob")
    }
    try:
        for who, client in clients.items():
            tools = {t.name: t for t in MoltCitiesToolkit(client=client).get_tools()}
            client.start()
            wait_until(lambda c=client: c.holding, f"{who}'s worker to hold", 30)  # type: ignore[misc]
            assert "confirmed" in tools["set_subscriptions"].invoke({"events": ["inbox.message"]})
            srv.notify(who, "inbox.message", {"message_id": f"{who}1", "preview": "hi"})
            post_as(srv, "carol", f"hello {who}").raise_for_status()
            got: list[str] = []

            def read(tool: BaseTool = tools["check_notifications"], got: list[str] = got) -> bool:
                msg = tool.invoke({"name": tool.name, "args": {}, "id": "c", "type": "tool_call"})
                got.extend(n["id"] for n in msg.artifact["notifications"])
                return bool(got)

            wait_until(read, f"{who}'s notification", 30)
            assert "Acknowledged 1" in tools["ack_notification"].invoke({"notification_id": got})
            wait_until(
                lambda t=tools["read_town_square"], w=who: f"hello {w}" in t.invoke({}),  # type: ignore[misc]
                f"{who}'s chat",
                30,
            )
        with redis.Redis.from_url(cluster.url, decode_responses=True) as r:
            keys = list(r.scan_iter(count=1000))
            assert keys
            untagged = [k for k in keys if hash_tag(k) is None]
            assert not untagged, untagged  # every key names its slot
            for who in ("alice", "bob"):
                tag = srv.agents[who].id
                mine = [k for k in keys if hash_tag(k) == tag]
                kinds = {k.split(":")[2] for k in mine}
                # The lease, both streams, the holder's board, the markers, the state.
                assert {"holder", "notifications", "town", "holder-status", "subscriptions",
                        "appended", "shown", "town-seen", "vals"} <= kinds, kinds  # fmt: skip
                assert {slot(k) for k in mine} == {slot("{" + tag + "}")}
                assert {int(r.execute_command("CLUSTER KEYSLOT", k)) for k in mine} == {
                    slot(mine[0])
                }
    finally:
        for client in clients.values():
            client.close()
