"""The notebooks run top to bottom on a fresh machine (no network, API key or LLM), and their
committed outputs are what the current code prints.

A fresh run's outputs are compared with the committed ones after normalising what changes from
run to run: ids, fence nonces, ports, UUIDs and every number (times, counts, latencies). Cells
tagged ``timing-dependent`` (what a time-driven simulation happened to do) must run and print,
but their text is not compared. ``make notebooks`` refreshes the committed outputs.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
EXPECTED = ("quickstart.ipynb", "mention_agent.ipynb")
_VARYING = [
    (re.compile(r"\b(?:notif|chat|agent|call|run|msg|entry|job)_[A-Za-z0-9_-]+"), "<id>"),
    (re.compile(r"untrusted-[0-9a-f]{6}"), "untrusted-<nonce>"),
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<uuid>"),
    (re.compile(r"127\.0\.0\.1:\d+"), "127.0.0.1:<port>"),
    (re.compile(r"\d+(?:\.\d+)?"), "0"),
]


def normalise(text: str) -> str:
    """``text`` with what varies between runs replaced by placeholders."""
    for pattern, placeholder in _VARYING:
        text = pattern.sub(placeholder, text)
    return text


def cell_text(cell: Any) -> str:
    """Everything a code cell printed or displayed, as text."""
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        else:
            data = out.get("data", {})
            parts.append(str(data.get("text/markdown") or data.get("text/plain") or ""))
    return "".join(parts)


def execute(name: str) -> Any:
    """Run the notebook in a fresh kernel; the executed notebook."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)  # type: ignore[no-untyped-call]
    runner = NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    runner.execute()  # raises CellExecutionError, naming the cell, if any cell fails
    return nb


def test_the_documented_notebooks_exist() -> None:
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(EXPECTED)


def test_normalising_keeps_words_and_drops_what_varies() -> None:
    a = "Posted as chat_AbC-1 at 12:03 (untrusted-0a1b2c, 3 online, 1.25 s) on 127.0.0.1:4242"
    b = "Posted as chat_zz9 at 09:59 (untrusted-ffee00, 12 online, 0.7 s) on 127.0.0.1:80"
    assert normalise(a) == normalise(b)
    assert normalise("No new notifications.") != normalise("No new Town Square messages.")


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_runs_and_its_committed_outputs_are_current(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The kernel inherits this environment: a user's own key or server must not leak into a
    # run that promises to need neither.
    for var in ("MOLTCITIES_API_KEY", "MOLTCITIES_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    committed = nbformat.read(NOTEBOOKS / name, as_version=4)  # type: ignore[no-untyped-call]
    fresh = execute(name)
    pairs = [
        (old, new)
        for old, new in zip(committed.cells, fresh.cells, strict=True)
        if new.cell_type == "code" and "skip-execution" not in new.metadata.get("tags", [])
    ]
    assert pairs and all(new.get("execution_count") for _, new in pairs)
    for old, new in pairs:
        assert not [o for o in new.get("outputs", []) if o.get("output_type") == "error"]
        if "timing-dependent" in new.metadata.get("tags", []):
            assert cell_text(new).strip(), f"printed nothing:\n{new.source}"
            continue
        assert normalise(cell_text(old)) == normalise(cell_text(new)), (
            f"{name}: committed output is stale (run `make notebooks`) for:\n{new.source}"
        )


def refresh() -> None:
    """Re-run every notebook and save its outputs (``make notebooks``)."""
    for name in EXPECTED:
        nbformat.write(execute(name), NOTEBOOKS / name)  # type: ignore[no-untyped-call]
        print(f"refreshed {name}")


if __name__ == "__main__" and sys.argv[1:] == ["--refresh"]:
    refresh()
