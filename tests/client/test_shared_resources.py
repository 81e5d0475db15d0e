"""What the clients of one LoopRunner share: the sync-callback workers, and a close that
doesn't wait on a server that never answers; over real sockets to the local server."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter, defaultdict
from typing import Any

import pytest

from conftest import fast_settings, wait_until
from langchain_moltcities import LoopRunner, MoltCitiesClient, close_all, start_all
from langchain_moltcities.protocol import NotificationFrame
from langchain_moltcities.server import LocalServer

AGENTS = [f"agent{i}" for i in range(16)]
SLOW = AGENTS[0]


def new_threads(before: set[threading.Thread]) -> list[str]:
    """Threads of ours made since ``before`` (the server's own may come and go)."""
    return [
        t.name
        for t in threading.enumerate()
        if t not in before and t.is_alive() and t.name.startswith("moltcities-")
    ]


def test_sync_callbacks_of_many_clients_share_a_bounded_pool_and_a_slow_one_keeps_its_share(
    moltcities_server_factory: Any,
) -> None:
    srv: LocalServer = moltcities_server_factory(mode="documented", agents=AGENTS)
    before = set(threading.enumerate())
    release = threading.Event()
    lock = threading.Lock()
    running: Counter[str] = Counter()
    peak: Counter[str] = Counter()
    ran_on: dict[str, list[str]] = defaultdict(list)

    def callback_of(agent: str) -> Any:
        def on_mention(frame: NotificationFrame) -> None:  # sync: runs in a worker thread
            with lock:
                running[agent] += 1
                peak[agent] = max(peak[agent], running[agent])
            try:
                if agent == SLOW:
                    release.wait(60)  # a stuck callback, until the test lets it go
                ran_on[agent].append(threading.current_thread().name)
            finally:
                with lock:
                    running[agent] -= 1

        return on_mention

    # Shared: at most 2 of the 4 per client; a worker is added once a call waited 0.05 s.
    runner = LoopRunner(callback_threads=4, callback_patience=0.05)
    clients = [
        MoltCitiesClient(
            api_key=srv.agents[a].api_key,
            base_url=srv.base_url,
            channels=("personal",),
            settings=fast_settings(),
            runner=runner,
            on_mention=callback_of(a),
        )
        for a in AGENTS
    ]
    try:
        assert start_all(clients, wait=30)
        # The slow agent is mentioned first and often: it would take every worker if it could.
        for i in range(6):
            srv.notify(SLOW, "mention", {"message_id": f"slow-{i}", "snippet": f"@{SLOW} {i}"})
        wait_until(lambda: running[SLOW] == 2, what="the slow agent's calls to fill its share")
        for a in AGENTS[1:]:
            srv.notify(a, "mention", {"message_id": f"m-{a}", "snippet": f"@{a} hello"})
        wait_until(
            lambda: all(ran_on[a] for a in AGENTS[1:]),
            what="every other agent's callback, while the slow ones are stuck",
        )
        assert running[SLOW] == 2 and not ran_on[SLOW]  # still stuck, holding only its share
        assert peak[SLOW] == 2
        workers = {name for a in AGENTS for name in ran_on[a]}
        assert all(name.startswith("moltcities-mention") for name in workers)
        # 16 clients with sync callbacks: one loop thread and at most 4 workers, not 64.
        mention_threads = [n for n in new_threads(before) if n.startswith("moltcities-mention")]
        assert 3 <= len(mention_threads) <= 4  # grown past the stuck ones, and no further
        assert len(new_threads(before)) <= 1 + 4
        release.set()
        wait_until(lambda: len(ran_on[SLOW]) == 6, what="the slow agent's queued calls")
        assert peak[SLOW] == 2
    finally:
        release.set()
        close_all(clients)
        runner.close()
    wait_until(lambda: not new_threads(before), what="the loop and its workers to end")


def test_quick_sync_callbacks_of_many_clients_cost_one_worker_thread(
    moltcities_server_factory: Any,
) -> None:
    srv: LocalServer = moltcities_server_factory(mode="documented", agents=AGENTS)
    before = set(threading.enumerate())
    calls: list[str] = []
    # Patience longer than the test: a second worker would mean it was made without need.
    runner = LoopRunner(callback_patience=300.0)
    clients = [
        MoltCitiesClient(
            api_key=srv.agents[a].api_key,
            base_url=srv.base_url,
            channels=("personal",),
            settings=fast_settings(),
            runner=runner,
            on_mention=lambda frame: calls.append(threading.current_thread().name),
        )
        for a in AGENTS
    ]
    try:
        assert start_all(clients, wait=30)
        for a in AGENTS:
            for i in range(3):
                srv.notify(a, "mention", {"message_id": f"q-{a}-{i}", "snippet": f"@{a} {i}"})
        wait_until(lambda: len(calls) == 3 * len(AGENTS), what="every mention's callback")
        # The many-agents target (main thread, loop thread, and one more) holds with them.
        assert len(set(calls)) == 1 and calls[0].startswith("moltcities-mention")
        assert sorted(new_threads(before)) == sorted([runner.name, calls[0]])
        assert runner.callbacks.workers == 1
    finally:
        close_all(clients)
        runner.close()
    wait_until(lambda: not new_threads(before), what="the loop and its worker to end")


def test_a_private_runner_gives_its_client_the_whole_pool(
    moltcities_server: LocalServer,
) -> None:
    srv = moltcities_server
    release = threading.Event()
    lock = threading.Lock()
    running = [0]

    def on_mention(frame: NotificationFrame) -> None:
        with lock:
            running[0] += 1
        release.wait(60)

    client = MoltCitiesClient(
        api_key=srv.agents["alice"].api_key,
        base_url=srv.base_url,
        channels=("personal",),
        settings=fast_settings(),
        on_mention=on_mention,
    )
    try:
        client.start()
        assert client.wait_connected(15)
        assert client.runner.callbacks.per_client == 4
        for i in range(6):
            srv.notify("alice", "mention", {"message_id": f"p-{i}", "snippet": f"@alice {i}"})
        wait_until(lambda: running[0] == 4, what="four calls at once, as before sharing")
    finally:
        release.set()
        client.close()


def test_loop_runner_rejects_a_pool_without_threads() -> None:
    with pytest.raises(ValueError, match="callback_threads"):
        LoopRunner(callback_threads=0)
    with pytest.raises(ValueError, match="callback_threads_per_client"):
        LoopRunner(callback_threads_per_client=0)


def test_close_all_does_not_wait_for_a_server_that_never_answers_a_close(
    moltcities_server_factory: Any,
) -> None:
    # Live mode: the server never answers a close frame and keeps TCP open.
    srv: LocalServer = moltcities_server_factory(mode="live", agents=AGENTS)
    runner = LoopRunner()
    # A close timeout the test could not afford to wait out even once.
    settings = fast_settings(close_timeout=120.0)
    clients = [
        MoltCitiesClient(
            api_key=srv.agents[a].api_key, base_url=srv.base_url, settings=settings, runner=runner
        )
        for a in AGENTS
    ]
    try:
        assert start_all(clients, wait=30)
        closed = threading.Event()

        def close_them() -> None:
            close_all(clients)
            closed.set()

        closer = threading.Thread(target=close_them)
        closer.start()
        # Correctness bound, not a benchmark: a quarter of one close_timeout.
        assert closed.wait(30), "close_all waited for close replies that never come"
        closer.join()
        assert all(c.status().closed for c in clients)
        assert all(s.state == "closed" for c in clients for s in c.status().channels.values())
        # The server saw every connection end (our close frame, then our side of TCP).
        wait_until(
            lambda: all(srv.connections(a) == {"personal": 0, "town-square": 0} for a in AGENTS),
            what="the server to see every connection gone",
        )

        async def tasks_left() -> list[str]:
            me = asyncio.current_task()
            return [t.get_name() for t in asyncio.all_tasks() if t is not me]

        assert runner.run(tasks_left()) == []
    finally:
        close_all(clients)
        runner.close()
