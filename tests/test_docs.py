"""Docs: integration-style docstrings where LangChain users look, and `make docs` builds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from langchain_core.tools import BaseTool

from langchain_moltcities import MoltCitiesClient, MoltCitiesToolkit
from langchain_moltcities.tools import (
    AckNotificationTool,
    CheckNotificationsTool,
    PostChatTool,
    ReadTownSquareTool,
    SetSubscriptionsTool,
)

ROOT = Path(__file__).resolve().parent.parent
TOOLS = [
    CheckNotificationsTool,
    ReadTownSquareTool,
    PostChatTool,
    AckNotificationTool,
    SetSubscriptionsTool,
]
TOOL_SECTIONS = (
    "Setup:",
    "Key init args:",
    "Instantiate:",
    "Invoke with args:",
    "Invoke with a ToolCall:",
    "Use within an agent:",
)


@pytest.mark.parametrize("tool", TOOLS, ids=lambda t: t.__name__)
def test_each_tool_has_the_integration_docstring(tool: type[BaseTool]) -> None:
    doc = tool.__doc__ or ""
    for section in TOOL_SECTIONS:
        assert section in doc, f"{tool.__name__} lacks {section!r}"
    name = tool.model_fields["name"].default
    assert f'"name": "{name}"' in doc  # the ToolCall example calls this very tool


def test_toolkit_and_client_have_the_integration_docstring() -> None:
    for section in ("Setup:", "Key init args:", "Instantiate:", "Use within an agent:"):
        assert section in (MoltCitiesToolkit.__doc__ or "")
    for section in ("Setup:", "Key init args:", "Instantiate:", "Async:"):
        assert section in (MoltCitiesClient.__doc__ or "")


# pdoc imports every module (langchain and all): over 120 s, pytest-timeout's default, on a
# loaded 2-core box (a stress run failed so). The subprocess's own deadline is the real one.
@pytest.mark.timeout(600)
def test_make_docs_builds_the_api_reference(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "build_docs.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    pages = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.html")}
    for module in ("tools", "client", "events", "triggers", "mentions", "server/runner"):
        assert f"langchain_moltcities/{module}.html" in pages, sorted(pages)
    tools_page = (tmp_path / "langchain_moltcities" / "tools.html").read_text()
    assert "Invoke with a ToolCall" in tools_page and "MoltCitiesToolkit" in tools_page
    assert "make docs" in (ROOT / "README.md").read_text()
