"""``moltcities listen --state FILE``: a restarted view catches up and flags re-deliveries."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from langchain_moltcities.cli import app
from langchain_moltcities.server.runner import LocalServer
from langchain_moltcities.testing import post_as

runner = CliRunner()


@pytest.fixture
def as_alice(moltcities_server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> LocalServer:
    monkeypatch.setenv("MOLTCITIES_API_KEY", moltcities_server.agents["alice"].api_key)
    monkeypatch.setenv("MOLTCITIES_BASE_URL", moltcities_server.base_url)
    return moltcities_server


def test_listen_with_state_catches_up_after_a_restart(
    as_alice: LocalServer, tmp_path: Path
) -> None:
    srv, state = as_alice, str(tmp_path / "listen.db")
    srv.notify("alice", "inbox.message", {"from_handle": "bob", "preview": "first note"})
    first = runner.invoke(app, ["listen", "--duration", "2", "--state", state])
    assert first.exit_code == 0, first.output
    assert "first note" in first.output and "re-delivery" not in first.output
    post_as(srv, "bob", "said while listen was off").raise_for_status()
    second = runner.invoke(app, ["listen", "--duration", "2", "--state", state])
    assert second.exit_code == 0, second.output
    out = second.output
    assert "said while listen was off" in out  # back-filled from the stored cursor
    # listen acks nothing, so the server delivers the note again: flagged this time.
    (line,) = [ln for ln in out.splitlines() if "first note" in ln]
    assert "re-delivery" in line


def test_listen_with_a_bad_state_file_says_what_to_do(
    as_alice: LocalServer, tmp_path: Path
) -> None:
    bad = tmp_path / "listen.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    result = runner.invoke(app, ["listen", "--duration", "1", "--state", str(bad)])
    assert result.exit_code == 2
    assert str(bad) in result.output and "move it away" in result.output
    assert bad.read_bytes() == b"this is not sqlite" * 100
