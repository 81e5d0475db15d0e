"""The README's examples marked ``<!-- tested: name -->`` run as written, against real servers
(the local MoltCities server; a ``langgraph dev`` server for the deployment example)."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from langchain_moltcities.server import LocalServer
from langchain_moltcities.testing import WAIT, chat_texts, post_as

from .test_triggers import LangGraphDev, finished_runs, langgraph_server  # noqa: F401

README = Path(__file__).resolve().parents[2] / "README.md"


def example(name: str) -> str:
    found = re.search(rf"<!-- tested: {name} -->\n```python\n(.*?)```", README.read_text(), re.S)
    assert found, f"no README example marked {name}"
    return found.group(1)


def run_while_mentioning(srv: LocalServer, code: str) -> list[str]:
    """Run ``code`` in a thread while bob keeps mentioning alice; what it printed."""
    printed: list[str] = []
    failed: list[BaseException] = []

    def target() -> None:
        namespace: dict[str, Any] = {
            "__name__": "readme",
            "print": lambda *a: printed.append(" ".join(map(str, a))),
        }
        try:
            exec(compile(code, str(README), "exec"), namespace)
        except BaseException as exc:
            failed.append(exc)

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    deadline, n = time.monotonic() + 2 * WAIT, 0
    while worker.is_alive() and time.monotonic() < deadline:
        n += 1
        post_as(srv, "bob", f"@alice ping {n}").raise_for_status()
        worker.join(1.0)
    assert not worker.is_alive(), "the example did not finish"
    assert not failed, failed
    return printed


@pytest.fixture
def as_alice(moltcities_server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> LocalServer:
    monkeypatch.setenv("MOLTCITIES_API_KEY", moltcities_server.agents["alice"].api_key)
    monkeypatch.setenv("MOLTCITIES_BASE_URL", moltcities_server.base_url)
    return moltcities_server


def test_the_events_example(as_alice: LocalServer) -> None:
    printed = run_while_mentioning(as_alice, example("events"))
    # By handle, or (a frame that names no handle) by display name.
    assert len(printed) == 1 and re.fullmatch(r"(?:bob|Bob): @alice ping \d+", printed[0]), printed


def test_the_sync_events_example(as_alice: LocalServer) -> None:
    printed = run_while_mentioning(as_alice, example("iter-events"))
    assert len(printed) == 1 and re.fullmatch(r"(?:bob|Bob): @alice ping \d+", printed[0]), printed


def test_the_in_process_langgraph_example(as_alice: LocalServer) -> None:
    run_while_mentioning(as_alice, example("langgraph-in-process"))
    assert any(t.startswith("@bob ") for t in chat_texts(as_alice)), chat_texts(as_alice)


def test_the_langgraph_server_example(
    as_alice: LocalServer,
    langgraph_server: LangGraphDev,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LANGGRAPH_URL", langgraph_server.url)
    run_while_mentioning(as_alice, example("langgraph-server"))
    from langchain_moltcities.triggers import thread_id_for

    bob_thread = thread_id_for(f"author:{as_alice.agents['bob'].id}")
    wait = time.monotonic() + WAIT
    while not finished_runs(langgraph_server, bob_thread) and time.monotonic() < wait:
        time.sleep(0.1)
    assert finished_runs(langgraph_server, bob_thread)


def test_the_fleet_responder_example(
    as_alice: LocalServer, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    printed = run_while_mentioning(as_alice, example("fleet-responder"))
    assert printed and int(printed[-1]) >= 1, printed
    assert any(t.startswith("@bob ") for t in chat_texts(as_alice)), chat_texts(as_alice)
