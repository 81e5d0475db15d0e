"""Every tool's schema is usable in strict tool calling (OpenAI and Anthropic shapes).

The rules checked are the documented strict-mode subset: objects list every property as
required and forbid additional ones; no ``default``, numeric or length bounds, formats or
patterns; ``anyOf`` not at the root. Limits live in the descriptions and in the tool itself.
"""

from __future__ import annotations

import re
from typing import Any

import jsonschema
import pytest
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool

from langchain_moltcities import MoltCitiesClient, MoltCitiesToolkit
from langchain_moltcities.limits import STRICT_KEYWORDS
from langchain_moltcities.server import LocalServer
from langchain_moltcities.testing import connected_client

from .test_tools import call

OFFLINE_CLIENT = MoltCitiesClient(api_key="mc_" + "0" * 64, base_url="http://127.0.0.1:9")
TOOLS = MoltCitiesToolkit(client=OFFLINE_CLIENT).get_tools()
ANTHROPIC_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def strict_violations(schema: dict[str, Any], where: str = "$") -> list[str]:
    """What in ``schema`` a strict-mode validator would reject."""
    found = [f"{where}: keyword {k!r}" for k in schema if k not in STRICT_KEYWORDS]
    if schema.get("type") == "object" or "properties" in schema:
        props = schema.get("properties", {})
        if schema.get("additionalProperties") is not False:
            found.append(f"{where}: additionalProperties is not false")
        if sorted(schema.get("required", [])) != sorted(props):
            found.append(f"{where}: required {schema.get('required')} != properties {list(props)}")
        for name, sub in props.items():
            found += strict_violations(sub, f"{where}.{name}")
    if isinstance(schema.get("items"), dict):
        found += strict_violations(schema["items"], f"{where}[]")
    for i, sub in enumerate(schema.get("anyOf", [])):
        found += strict_violations(sub, f"{where}|{i}")
    return found


def anthropic_tool(tool: BaseTool) -> dict[str, Any]:
    """The shape Anthropic's API takes (as langchain-anthropic builds it), strict."""
    fn = convert_to_openai_tool(tool, strict=True)["function"]
    return {
        "name": fn["name"],
        "description": fn["description"],
        "input_schema": fn["parameters"],
        "strict": True,
    }


def test_the_checker_catches_what_strict_mode_rejects() -> None:
    bad = {
        "type": "object",
        "properties": {"limit": {"type": "integer", "default": 20, "maximum": 100}},
        "required": [],
    }
    said = " ".join(strict_violations(bad))
    assert "'default'" in said and "'maximum'" in said
    assert "additionalProperties" in said and "required" in said


@pytest.mark.parametrize("tool", TOOLS, ids=lambda t: t.name)
def test_openai_strict_schema_follows_the_rules(tool: BaseTool) -> None:
    converted = convert_to_openai_tool(tool, strict=True)
    params = converted["function"]["parameters"]
    assert converted["function"]["strict"] is True
    assert params["type"] == "object" and "anyOf" not in params
    assert strict_violations(params) == []
    jsonschema.Draft202012Validator.check_schema(params)


@pytest.mark.parametrize("tool", TOOLS, ids=lambda t: t.name)
def test_anthropic_shape_follows_the_rules(tool: BaseTool) -> None:
    spec = anthropic_tool(tool)
    assert ANTHROPIC_NAME.match(spec["name"])
    assert spec["description"] and spec["input_schema"]["type"] == "object"
    assert strict_violations(spec["input_schema"]) == []


@pytest.mark.parametrize("tool", TOOLS, ids=lambda t: t.name)
def test_limits_are_said_in_the_descriptions(tool: BaseTool) -> None:
    params = convert_to_openai_tool(tool, strict=True)["function"]["parameters"]
    for name, prop in params["properties"].items():
        assert prop.get("description"), f"{tool.name}.{name} has no description"
    limits = {"limit": r"1-\d+", "message": "1-500 characters", "events": "at least one"}
    for name, pattern in limits.items():
        if name in params["properties"]:
            assert re.search(pattern, params["properties"][name]["description"]), name


def test_strict_shaped_calls_work_and_limits_are_still_enforced(
    moltcities_server: LocalServer,
) -> None:
    """A strict-mode model sends every argument (null for 'all'); out-of-range values are
    refused by the tool with the limit, since the schema no longer carries it."""
    with connected_client(moltcities_server) as client:
        tools = {t.name: t for t in MoltCitiesToolkit(client=client).get_tools()}
        params = convert_to_openai_tool(tools["check_notifications"], strict=True)
        args = {"event_types": None, "limit": 20}
        jsonschema.validate(args, params["function"]["parameters"])
        assert call(tools["check_notifications"], args).status == "success"
        refused: list[tuple[str, dict[str, Any], str]] = [
            ("check_notifications", {"event_types": None, "limit": 101}, "between 1 and 100"),
            ("read_town_square", {"limit": 0}, "between 1 and 200"),
            ("post_chat", {"message": ""}, "at least 1 character"),
            ("post_chat", {"message": "x" * 501}, "at most 500"),
            ("set_subscriptions", {"events": []}, "at least 1 event type"),
        ]
        for name, bad, says in refused:
            out = call(tools[name], bad)
            assert out.status == "error" and says in str(out.content), (name, out.content)
            # Each refusal says how to recover ("Fix them ...", "Shorten it ...").
            assert "again" in str(out.content), (name, out.content)
