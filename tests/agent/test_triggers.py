"""LangGraph triggers: a compiled graph in process with a thread per author, and a LangGraph
server deployment through langgraph-sdk's runs.create (against a small fake of its HTTP API:
no LangGraph server runs on this machine)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from langchain.agents import create_agent
from langgraph.checkpoint.memory import InMemorySaver

from langchain_moltcities import MoltCitiesToolkit, OfflineChatModel
from langchain_moltcities.mentions import Mention, MentionResponder
from langchain_moltcities.server import LocalServer
from langchain_moltcities.testing import chat_texts, connected_client, post_as, wait_until
from langchain_moltcities.triggers import (
    LangGraphServerTrigger,
    thread_id_for,
    thread_per_author,
    thread_per_conversation,
)


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


class FakeLangGraphServer:
    """Answers the two endpoints the trigger uses, as the LangGraph server API documents them:
    POST /threads/{id}/runs (create a background run) and POST /threads/{id}/runs/wait."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append((self.path, body))
                thread_id = self.path.split("/")[2]
                if self.path.endswith("/runs/wait"):
                    answer: dict[str, Any] = {
                        "messages": [
                            {"type": "human", "content": "prompt", "id": "m1"},
                            {
                                "type": "tool",
                                "name": "post_chat",
                                "content": "Posted.",
                                "tool_call_id": "c1",
                                "status": "success",
                                "id": "m2",
                            },
                        ]
                    }
                else:
                    answer = {
                        "run_id": f"run-{len(outer.requests)}",
                        "thread_id": thread_id,
                        "assistant_id": body["assistant_id"],
                        "status": "pending",
                        "created_at": "2026-01-01T00:00:00Z",
                        "updated_at": "2026-01-01T00:00:00Z",
                        "metadata": {},
                        "multitask_strategy": body.get("multitask_strategy"),
                    }
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def langgraph_server() -> Iterator[FakeLangGraphServer]:
    fake = FakeLangGraphServer()
    yield fake
    fake.httpd.shutdown()
    fake.httpd.server_close()


def test_each_mention_starts_a_run_on_the_authors_thread(
    moltcities_server: LocalServer, langgraph_server: FakeLangGraphServer
) -> None:
    srv = moltcities_server
    trigger = LangGraphServerTrigger(url=langgraph_server.url, assistant_id="agent")
    with connected_client(srv) as client:
        responder = MentionResponder(trigger, client, cooldown=0, config=thread_per_author())
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
    paths = [p for p, _ in langgraph_server.requests]
    assert paths == [f"/threads/{t}/runs" for t in (bob_thread, bob_thread, carol_thread)]
    body = langgraph_server.requests[0][1]
    assert body["assistant_id"] == "agent"
    assert body["if_not_exists"] == "create" and body["multitask_strategy"] == "enqueue"
    assert "@alice first" in json.dumps(body["input"])


async def test_wait_mode_returns_the_final_state_and_replies_are_counted(
    langgraph_server: FakeLangGraphServer,
) -> None:
    trigger = LangGraphServerTrigger(url=langgraph_server.url, assistant_id="agent", wait=True)
    config = thread_per_author()([mention("ag_bob", "bob")])
    state = await trigger.ainvoke({"messages": [("user", "hi")]}, config)
    assert langgraph_server.requests[0][0].endswith("/runs/wait")
    assert state["messages"][1].name == "post_chat"
    from langchain_moltcities.mentions import _replies_in

    assert _replies_in(state, "prompt") == 1
    sync_state = trigger.invoke({"messages": [("user", "hi")]}, config)
    assert sync_state["messages"][1].status == "success"
