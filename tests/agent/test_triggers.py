"""LangGraph triggers: a compiled graph in process with a thread per author, and a LangGraph
server deployment through langgraph-sdk's runs.create, against a real ``langgraph dev``
server (in memory) running ``langgraph_app/graph.py``."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain.agents import create_agent
from langgraph.checkpoint.memory import InMemorySaver
from langgraph_sdk import get_sync_client
from langgraph_sdk.client import SyncLangGraphClient

from langchain_moltcities import MoltCitiesToolkit, OfflineChatModel
from langchain_moltcities.mentions import Mention, MentionResponder, _replies_in
from langchain_moltcities.server import LocalServer
from langchain_moltcities.testing import chat_texts, connected_client, post_as, wait_until
from langchain_moltcities.triggers import (
    LangGraphServerTrigger,
    thread_id_for,
    thread_per_author,
    thread_per_conversation,
)

# Past pytest-timeout's 120 s on a loaded box: langgraph dev may take 180 s to start.
pytestmark = pytest.mark.timeout(600)


def mention(author_id: str, handle: str) -> Mention:
    return Mention(f"n_{author_id}", author_id, handle, 0.0)


def test_thread_ids_are_stable_uuids_per_author_or_conversation() -> None:
    per_author = thread_per_author(base={"recursion_limit": 10})
    bob = per_author([mention("ag_bob", "bob")])
    assert bob["configurable"]["thread_id"] == thread_id_for("author:ag_bob")
    assert bob["recursion_limit"] == 10
    assert per_author([mention("ag_bob", "bobby")]) == bob  # the id, not the handle, decides
    assert per_author([mention("ag_carol", "carol")]) != bob
    one = thread_per_conversation()
    assert one([mention("ag_bob", "bob")]) == one([mention("ag_carol", "carol")])
    assert len(bob["configurable"]["thread_id"]) == 36  # a UUID, as LangGraph servers need


def test_a_compiled_graph_runs_per_mention_in_a_thread_per_author(
    moltcities_server: LocalServer,
) -> None:
    srv = moltcities_server
    with connected_client(srv) as client:
        graph = create_agent(
            OfflineChatModel(),
            MoltCitiesToolkit(client=client).get_tools(),
            checkpointer=InMemorySaver(),
        )
        config_for = thread_per_author()
        responder = MentionResponder(graph, client, cooldown=0, config=config_for)
        with responder:
            post_as(srv, "bob", "@alice hi from bob").raise_for_status()
            wait_until(lambda: responder.stats.turns == 1 and not responder.guard.busy, "turn 1")
            post_as(srv, "carol", "@alice hi from carol").raise_for_status()
            wait_until(lambda: responder.stats.turns == 2 and not responder.guard.busy, "turn 2")
        assert responder.stats.replies == 2
        threads = {}
        for who in ("bob", "carol"):
            agent_id = srv.agents[who].id
            config = config_for([Mention("x", agent_id, who, 0.0)])
            threads[who] = graph.get_state(config).values["messages"]
        assert "hi from bob" in str(threads["bob"][0].content)
        assert "hi from carol" not in " ".join(str(m.content) for m in threads["bob"])
        assert "hi from carol" in str(threads["carol"][0].content)
    assert [t for t in chat_texts(srv) if t.startswith("@carol ")]


# --------------------------------------------------------------------------- LangGraph server

APP = Path(__file__).resolve().parent / "langgraph_app"


@dataclass
class LangGraphDev:
    url: str
    client: SyncLangGraphClient


@pytest.fixture(scope="module")
def langgraph_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LangGraphDev]:
    """A real LangGraph server (``langgraph dev``, in memory) running ``langgraph_app``."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # A copy: the server keeps its state (.langgraph_api/) beside the app, and each run
    # starts empty.
    home = tmp_path_factory.mktemp("langgraph")
    app = Path(shutil.copytree(APP, home / "app", ignore=shutil.ignore_patterns(".langgraph_api")))
    log = (home / "server.log").open("w")
    env = {**os.environ, "LANGSMITH_TRACING": "false", "LANGCHAIN_TRACING_V2": "false"}
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "langgraph"),
            "dev",
            "--port",
            str(port),
            "--no-browser",
            "--no-reload",
            "--config",
            str(app / "langgraph.json"),
        ],
        cwd=app,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180  # a busy machine starts it in 10-40 s
        while True:
            try:
                if httpx.get(f"{url}/ok", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                raise AssertionError(f"langgraph dev did not start; see {log.name}")
            time.sleep(0.2)
        yield LangGraphDev(url, get_sync_client(url=url, api_key=None))
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(20)
        log.close()


def finished_runs(lg: LangGraphDev, thread_id: str) -> list[Any]:
    try:
        runs = lg.client.runs.list(thread_id)
    except httpx.HTTPStatusError:
        return []  # the thread does not exist yet
    return [r for r in runs if r["status"] == "success"]


def test_each_mention_starts_a_run_on_the_authors_thread(
    moltcities_server: LocalServer, langgraph_server: LangGraphDev
) -> None:
    srv, lg = moltcities_server, langgraph_server
    trigger = LangGraphServerTrigger(url=lg.url, assistant_id="agent")
    with connected_client(srv) as client:
        responder = MentionResponder(
            trigger, client, cooldown=0, context_messages=0, config=thread_per_author()
        )
        with responder:
            post_as(srv, "bob", "@alice first").raise_for_status()
            wait_until(lambda: responder.stats.turns == 1 and not responder.guard.busy, "turn 1")
            post_as(srv, "bob", "@alice second").raise_for_status()
            wait_until(lambda: responder.stats.turns == 2 and not responder.guard.busy, "turn 2")
            post_as(srv, "alice", "@alice talking to myself").raise_for_status()  # no run
            post_as(srv, "carol", "@alice third").raise_for_status()
            wait_until(lambda: responder.stats.turns == 3 and not responder.guard.busy, "turn 3")
        assert responder.stats.errors == 0
    bob_thread = thread_id_for(f"author:{srv.agents['bob'].id}")
    carol_thread = thread_id_for(f"author:{srv.agents['carol'].id}")
    wait_until(lambda: len(finished_runs(lg, bob_thread)) == 2, "bob's two runs")
    wait_until(lambda: len(finished_runs(lg, carol_thread)) == 1, "carol's run")
    bob_said = json.dumps(lg.client.threads.get_state(bob_thread)["values"])
    assert "@alice first" in bob_said and "@alice second" in bob_said
    assert "third" not in bob_said and "talking to myself" not in bob_said
    assert "@alice third" in json.dumps(lg.client.threads.get_state(carol_thread)["values"])


async def test_wait_mode_returns_the_final_state_and_replies_are_counted(
    langgraph_server: LangGraphDev,
) -> None:
    trigger = LangGraphServerTrigger(url=langgraph_server.url, assistant_id="agent", wait=True)
    namespace = f"wait-test-{uuid.uuid4()}"  # a thread no earlier run used
    config = thread_per_author(namespace=namespace)([mention("ag_bob", "bob")])
    state = await trigger.ainvoke({"messages": [("user", "prompt one")]}, config)
    tool = state["messages"][-1]
    assert tool.name == "post_chat" and tool.status == "success"
    assert _replies_in(state, "prompt one") == 1
    again = await asyncio.to_thread(trigger.invoke, {"messages": [("user", "prompt two")]}, config)
    assert _replies_in(again, "prompt two") == 1  # the thread grew; only this turn counts
    assert len(again["messages"]) == 6
