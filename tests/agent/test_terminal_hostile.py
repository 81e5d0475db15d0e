"""Nobody drives the terminal: `moltcities listen`, the demo's log and the CLI print peer and
server strings literally, with no rich markup and no control sequence honoured."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console
from typer.testing import CliRunner

from langchain_moltcities.cli import app
from langchain_moltcities.demo import _Log
from langchain_moltcities.server import LocalServer

runner = CliRunner()

# OSC 52 clipboard write, OSC 8 hyperlink, cursor moves, screen wipe, bell, bidi override.
ESCAPES = (
    "\x1b]52;c;ZXZpbA==\x07",
    "\x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\",
    "\x1b[2J\x1b[H\x1b[10A",
    "\x07",
    "\u202e",
)
MARKUP = ("[/]", "[link=https://evil.example]click[/link]", "[conceal]hidden[/conceal]", "[bold")
ANY_ESCAPE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


@pytest.fixture
def as_alice(moltcities_server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> LocalServer:
    monkeypatch.setenv("MOLTCITIES_API_KEY", moltcities_server.agents["alice"].api_key)
    monkeypatch.setenv("MOLTCITIES_BASE_URL", moltcities_server.base_url)
    return moltcities_server


def test_listen_prints_markup_and_escapes_from_an_inbox_literally(as_alice: LocalServer) -> None:
    srv = as_alice
    srv.notify(
        "alice",
        "inbox.message",
        {
            "from_handle": None,
            "from": {"name": "@alice"},  # a display name posing as the agent itself
            "subject": "/",
            "preview": " ".join(MARKUP) + " " + " ".join(ESCAPES) + " end-of-text",
        },
    )
    srv.notify("alice", "inbox.message", {"from_handle": "bob", "subject": "[/]", "preview": "x"})
    srv.notify(
        "alice",
        "job.status" + "\x1b[31m",  # an event type with an escape in it
        {"job_title": "[link=https://evil.example]job[/link]", "new_status": "done\x1b[2J"},
    )
    result = runner.invoke(app, ["listen", "--duration", "3"])
    # A stray "[/]" used to raise rich's MarkupError and end `listen` (on every restart).
    assert result.exit_code == 0, result.output
    out = result.output
    for text in MARKUP:
        assert text in out  # printed as written, never interpreted
    assert "end-of-text" in out and "[/] " in out  # the subject "/", bracketed
    assert not ANY_ESCAPE.search(out.replace("\n", ""))
    assert '"(at)alice":' in out and "@alice:" not in out


def test_the_demo_log_prints_outside_text_literally() -> None:
    buf = io.StringIO()
    log = _Log(Console(file=buf, force_terminal=True, width=400, color_system="standard"))
    hostile = " ".join(MARKUP + ESCAPES)
    log("bob", "says", hostile)  # used to be parsed as markup: "[/]" raised MarkupError
    out = buf.getvalue()
    for text in MARKUP:
        assert text in out
    # Only our own colour codes (SGR "m") reach the terminal: no OSC, cursor or wipe.
    without_sgr = re.sub(r"\x1b\[[0-9;]*m", "", out)
    assert not ANY_ESCAPE.search(without_sgr.replace("\n", ""))


def test_post_echoes_the_server_reply_without_its_escapes(as_alice: LocalServer) -> None:
    result = runner.invoke(app, ["post", "plain [bold]text[/bold] here"])
    assert result.exit_code == 0, result.output
    assert "[bold]text[/bold]" in result.output
    refused = runner.invoke(app, ["post", "wipe \x1b[2J"])
    assert refused.exit_code == 1 and "control characters" in refused.output
    assert "\x1b" not in refused.output
