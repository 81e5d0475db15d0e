"""The command line: demo, post and listen, in-process through typer's runner."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest
from typer.testing import CliRunner

from langchain_moltcities.cli import app
from langchain_moltcities.server import LocalServer
from langchain_moltcities.server.pytest_plugin import ServerFactory
from langchain_moltcities.testing import WAIT, chat_texts, post_as

runner = CliRunner()


@pytest.fixture
def as_alice(moltcities_server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> LocalServer:
    monkeypatch.setenv("MOLTCITIES_API_KEY", moltcities_server.agents["alice"].api_key)
    monkeypatch.setenv("MOLTCITIES_BASE_URL", moltcities_server.base_url)
    return moltcities_server


def test_demo_runs_offline_and_exits_zero() -> None:
    # The first mention comes about 5 s in; the rest is margin for a loaded machine.
    result = runner.invoke(app, ["demo", "--duration", "12"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "offline, rule-based stand-in model" in out
    assert "calls post_chat" in out and "replied" in out
    assert "notification(s) arrived" in out and "agent(s) online" in out
    assert "drops all" in out and "(connects: 2)" in out  # the drop, and the reconnect
    assert "What happened" in out
    # A restart-safe agent: its state file kept the mentions it answered.
    assert "Agent state file" in out and "mention_done: 0" not in out


def test_demo_with_a_model_it_cannot_load_says_what_to_do() -> None:
    result = runner.invoke(app, ["demo", "--model", "nosuchprovider:big-model"])
    assert result.exit_code == 2
    assert "cannot load --model 'nosuchprovider:big-model'" in result.output
    assert "omit --model" in result.output


def test_post_and_its_errors(as_alice: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    srv = as_alice
    ok = runner.invoke(app, ["post", "hello from the command line"])
    assert ok.exit_code == 0, ok.output
    assert "posted chat_" in ok.output
    assert chat_texts(srv) == ["hello from the command line"]

    empty = runner.invoke(app, ["post", "   "])
    assert empty.exit_code == 1 and "Error" in empty.output

    monkeypatch.setenv("MOLTCITIES_API_KEY", "mc_" + "0" * 64)
    rejected = runner.invoke(app, ["post", "hi"])
    assert rejected.exit_code == 1 and "rejected the API key" in rejected.output
    assert "0" * 64 not in rejected.output

    monkeypatch.delenv("MOLTCITIES_API_KEY")
    missing = runner.invoke(app, ["post", "hi"])
    assert missing.exit_code == 2 and "MOLTCITIES_API_KEY" in missing.output


def test_post_when_rate_limited(
    moltcities_server_factory: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    srv = moltcities_server_factory(chat_rate_limit=(1, 60.0))
    args = ["--api-key", srv.agents["bob"].api_key, "--base-url", srv.base_url]
    assert runner.invoke(app, ["post", "one", *args]).exit_code == 0
    limited = runner.invoke(app, ["post", "two", *args])
    assert limited.exit_code == 1
    assert "Rate limited: nothing was posted; try again in" in limited.output
    assert srv.agents["bob"].api_key not in limited.output


def test_listen_shows_what_arrives_neutralised(as_alice: LocalServer) -> None:
    srv = as_alice
    srv.notify("alice", "inbox.message", {"from_handle": "bob", "preview": "queued while away"})
    post_as(srv, "bob", "@alice \x1b[2Jwiped? no").raise_for_status()
    result = runner.invoke(app, ["listen", "--duration", "3"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "personal: connected" in out and "town-square: connected" in out
    assert "queued while away" in out and "(queued)" in out
    assert "mention" in out and "wiped? no" in out
    assert "\x1b[2J" not in out
    assert srv.agents["alice"].api_key not in out


def test_listen_with_a_rejected_key_stops_with_the_reason(
    moltcities_server: LocalServer,
) -> None:
    args = ["--api-key", "mc_" + "1" * 64, "--base-url", moltcities_server.base_url]
    result = runner.invoke(app, ["listen", "--duration", "20", *args])
    assert result.exit_code == 1
    assert "failed" in result.output and "API key" in result.output


def test_listen_without_a_key_says_where_to_put_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MOLTCITIES_API_KEY", raising=False)
    result = runner.invoke(app, ["listen", "--duration", "1"])
    assert result.exit_code == 2 and "MOLTCITIES_API_KEY" in result.output


def test_listen_shows_a_reconnect_and_stops_on_ctrl_c(moltcities_server: LocalServer) -> None:
    srv = moltcities_server
    env = {
        **os.environ,
        "MOLTCITIES_API_KEY": srv.agents["alice"].api_key,
        "MOLTCITIES_BASE_URL": srv.base_url,
        "PYTHONUNBUFFERED": "1",
        "PYTHONFAULTHANDLER": "1",  # SIGABRT prints every thread's stack (see below)
    }
    # A shell that starts the suite in the background (`make test &`, some CI runners) hands
    # its children SIGINT ignored, and Python then installs no Ctrl-C handler: the child sets
    # the one a terminal user has.
    code = (
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from langchain_moltcities.cli import app; app()"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "listen"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in proc.stdout or ():
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []

    def wait_for_line(needle: str, wait: float = WAIT) -> None:
        deadline = time.monotonic() + wait
        while not any(needle in line for line in seen):
            assert time.monotonic() < deadline, f"no {needle!r} in {seen}"
            try:
                seen.append(lines.get(timeout=0.1))
            except queue.Empty:
                pass

    try:
        # A fresh interpreter importing langchain and its kin: on a loaded machine (2 cores,
        # busy loops beside the suite) that alone took over 20 s.
        wait_for_line("personal: connected, connects: 1", 3 * WAIT)
        wait_for_line("town-square: connected, connects: 1")
        srv.drop_all()
        wait_for_line("personal: connected, connects: 2")
        wait_for_line("town-square: connected, connects: 2")
        proc.send_signal(signal.SIGINT)
        try:
            exit_code = proc.wait(3 * WAIT)
        except subprocess.TimeoutExpired:
            # It did not stop: say where each of its threads was.
            proc.send_signal(signal.SIGABRT)
            proc.wait(WAIT)
            time.sleep(1)  # the pump thread reads the rest
            while not lines.empty():
                seen.append(lines.get())
            raise AssertionError("listen ignored Ctrl-C:\n" + "".join(seen)) from None
        assert exit_code == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(WAIT)
    wait_for_line("stopped")
    assert srv.agents["alice"].api_key not in "".join(seen)


def test_cli_errors_name_the_flags(as_alice: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOLTCITIES_API_KEY", "mc_" + "0" * 64)
    rejected = runner.invoke(app, ["post", "hi"])
    assert rejected.exit_code == 1 and "--api-key" in rejected.output, rejected.output
    assert "api_key argument" not in rejected.output

    monkeypatch.delenv("MOLTCITIES_API_KEY")
    missing = runner.invoke(app, ["post", "hi"])
    assert missing.exit_code == 2, missing.output
    assert "--api-key" in missing.output and "api_key=" not in missing.output

    bad_url = runner.invoke(app, ["post", "hi", "--api-key", "mc_" + "1" * 64, "--base-url", "x"])
    assert bad_url.exit_code == 2 and "--base-url" in bad_url.output, bad_url.output


def test_listen_with_a_rejected_key_says_so_once(moltcities_server: LocalServer) -> None:
    args = ["--api-key", "mc_" + "1" * 64, "--base-url", moltcities_server.base_url]
    result = runner.invoke(app, ["listen", "--duration", "20", *args])
    assert result.exit_code == 1
    assert result.output.count("rejected the API key") == 1, result.output
    assert "--api-key" in result.output and "api_key argument" not in result.output
