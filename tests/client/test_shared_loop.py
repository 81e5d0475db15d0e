"""Many MoltCitiesClients on one shared LoopRunner, over real sockets to the local server."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from conftest import fast_settings, wait_until
from langchain_moltcities import (
    LoopRunner,
    MoltCitiesClient,
    MoltCitiesError,
    NotConnectedError,
    aclose_all,
    astart_all,
    close_all,
    start_all,
)
from langchain_moltcities.protocol import NotificationFrame
from langchain_moltcities.server import LocalServer

AGENTS = [f"agent{i}" for i in range(12)]


def clients_on(srv: LocalServer, runner: LoopRunner, **kw: Any) -> list[MoltCitiesClient]:
    kw.setdefault("settings", fast_settings())
    return [
        MoltCitiesClient(api_key=srv.agents[a].api_key, base_url=srv.base_url, runner=runner, **kw)
        for a in AGENTS
    ]


def notify_each(srv: LocalServer) -> None:
    for a in AGENTS:
        srv.notify(a, "inbox.message", {"message_id": f"m-{a}", "preview": f"for {a}"})


def read_some(client: MoltCitiesClient, what: str) -> list[NotificationFrame]:
    got: list[NotificationFrame] = []

    def arrived() -> bool:
        got.extend(client.read_notifications().items)
        return bool(got)

    wait_until(arrived, what=what)
    return got


def our_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("moltcities-")]


def leftover_tasks(runner: LoopRunner) -> list[str]:
    async def others() -> list[str]:
        me = asyncio.current_task()
        return [t.get_name() for t in asyncio.all_tasks() if t is not me]

    return runner.run(others())


@pytest.fixture(params=["documented", "live"])
def city(request: pytest.FixtureRequest, moltcities_server_factory: Any) -> LocalServer:
    server: LocalServer = moltcities_server_factory(mode=request.param, agents=AGENTS)
    return server


def test_many_clients_share_one_thread_and_each_gets_its_own(city: LocalServer) -> None:
    before = set(threading.enumerate())
    runner = LoopRunner()
    clients = clients_on(city, runner)
    try:
        assert start_all(clients, wait=30)
        # One loop thread for all of them (a client alone would have made one each).
        assert our_threads().count(runner.name) == 1
        assert "moltcities-client" not in our_threads()
        notify_each(city)
        for agent, client in zip(AGENTS, clients, strict=True):
            got = read_some(client, f"{agent}'s notification")
            assert [n.text for n in got] == [f"for {agent}"]
        # The sync face: each client answers for its own identity.
        assert [c.me().agent.id for c in clients] == [city.agents[a].id for a in AGENTS]
    finally:
        close_all(clients)
    assert all(c.status().closed for c in clients)
    assert all(s.state == "closed" for c in clients for s in c.status().channels.values())
    # Closing the clients leaves nothing running on the shared loop; it lives until closed.
    assert leftover_tasks(runner) == []
    assert runner.thread is not None and runner.thread.is_alive()
    runner.close()
    assert runner.loop is not None and runner.loop.is_closed()
    assert not [t for t in threading.enumerate() if t not in before and t.is_alive()]


async def test_async_face_on_a_shared_loop(moltcities_server_factory: Any) -> None:
    srv: LocalServer = moltcities_server_factory(mode="documented", agents=AGENTS)
    with LoopRunner() as runner:
        clients = clients_on(srv, runner)
        try:
            assert await astart_all(clients, wait=30)
            me = await asyncio.gather(*(c.ame() for c in clients))
            assert [m.handle for m in me] == AGENTS
            posted = await clients[0].apost_chat("hello from a shared loop")
            assert posted.message == "hello from a shared loop"

            # Code already on the shared loop uses the async twins directly; a blocking
            # method there would deadlock the loop, so it is refused with a hint.
            async def on_the_loop() -> str | None:
                assert await clients[1].ame() is not None
                with pytest.raises(MoltCitiesError, match="async twin"):
                    clients[1].me()
                return clients[1].handle

            assert await runner.arun(on_the_loop()) == AGENTS[1]
        finally:
            await aclose_all(clients)
        assert leftover_tasks(runner) == []
        assert all(c.status().closed for c in clients)
    assert runner.closed
    with pytest.raises(NotConnectedError):
        await clients[0].ame()


def test_a_client_closed_from_its_callback_leaves_the_others_running(
    moltcities_server_factory: Any,
) -> None:
    srv: LocalServer = moltcities_server_factory(mode="documented", agents=AGENTS[:2])
    with LoopRunner() as runner:
        first: MoltCitiesClient

        async def close_self(frame: NotificationFrame) -> None:
            await first.aclose()

        first = MoltCitiesClient(
            api_key=srv.agents[AGENTS[0]].api_key,
            base_url=srv.base_url,
            settings=fast_settings(),
            runner=runner,
            on_mention=close_self,
        )
        second = MoltCitiesClient(
            api_key=srv.agents[AGENTS[1]].api_key,
            base_url=srv.base_url,
            settings=fast_settings(),
            runner=runner,
        )
        try:
            assert start_all([first, second], wait=30)
            srv.notify(AGENTS[0], "mention", {"message_id": "c1", "snippet": "@agent0 stop"})
            wait_until(
                lambda: all(s.state == "closed" for s in first.status().channels.values()),
                what="the first client to close itself",
            )
            assert first.status().closed
            srv.notify(AGENTS[1], "inbox.message", {"message_id": "m2", "preview": "still here"})
            got = read_some(second, "the second client's notification")
            assert [n.text for n in got] == ["still here"]
            assert second.status().connected
        finally:
            close_all([first, second])
        # The self-close finishes on the loop (after its callbacks' grace period).
        wait_until(lambda: leftover_tasks(runner) == [], what="no tasks left on the loop")


def test_a_closed_runner_refuses_new_clients_clearly(moltcities_server: LocalServer) -> None:
    runner = LoopRunner()
    runner.close()
    client = MoltCitiesClient(
        api_key=moltcities_server.agents["alice"].api_key,
        base_url=moltcities_server.base_url,
        runner=runner,
    )
    with pytest.raises(NotConnectedError, match=r"LoopRunner .* was closed"):
        client.start()


def test_a_private_runner_ends_with_its_client(moltcities_server: LocalServer) -> None:
    client = MoltCitiesClient(
        api_key=moltcities_server.agents["alice"].api_key,
        base_url=moltcities_server.base_url,
        settings=fast_settings(),
    )
    with client:
        assert client.wait_connected(15)
        assert client.runner.private and client.runner.thread is not None
        thread = client.runner.thread
    assert not thread.is_alive()
    assert client.runner.closed
