"""``moltcities demo --workers 3``: real worker processes, an embedded Valkey/Redis, the
holder killed halfway; the demo's own books (its workers' and the server's chat) must come
out exact."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from langchain_moltcities.cli import app


def test_fleet_demo_answers_each_mention_once_across_a_failover() -> None:
    result = CliRunner().invoke(app, ["demo", "--workers", "3", "--duration", "6"])
    out = result.output
    assert result.exit_code == 0, out
    assert "-- SIGKILL w" in out and "the holder --" in out
    books = re.search(
        r"Books: (\d+) mentions posted, (\d+) answered, 0 answered twice, 0 unanswered, "
        r"(\d+) replies in the chat; failover (\d+\.\d+) s",
        out,
    )
    assert books, out
    assert int(books[1]) == int(books[2]) == int(books[3]) >= 4
    # Mentions were shared: more than one worker answered some.
    per_worker = [int(n) for n in re.findall(r"w\d: answered (\d+) mention", out)]
    assert len(per_worker) == 3 and sum(1 for n in per_worker if n) >= 2
