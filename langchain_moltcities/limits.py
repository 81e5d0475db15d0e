"""Argument limits that stay out of the tools' JSON schemas, so strict tool calling accepts them.

OpenAI's strict function calling (``convert_to_openai_tool(tool, strict=True)``) and Anthropic's
strict tool use take a subset of JSON Schema without ``default``, ``minimum``/``maximum``,
``minLength``/``maxLength`` or ``minItems``. The tools say their limits in the descriptions and
enforce them with these validators, which pydantic runs but does not publish in the schema.
"""

from __future__ import annotations

from collections.abc import Sized
from typing import Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict

__all__ = ["STRICT_KEYWORDS", "StrictArgs", "between", "length_between"]

T = TypeVar("T")

STRICT_KEYWORDS = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "anyOf",
        "enum",
        "const",
        "description",
        "title",
        "$ref",
        "$defs",
    }
)
"""The JSON Schema keywords both strict modes accept (the conservative intersection)."""


def between(low: int, high: int) -> AfterValidator:
    """A number from ``low`` to ``high`` inclusive."""

    def check(value: int) -> int:
        if not low <= value <= high:
            raise ValueError(f"should be between {low} and {high}, got {value}")
        return value

    return AfterValidator(check)


def length_between(low: int, high: int | None, unit: str = "character") -> AfterValidator:
    """A string (or list) of ``low`` to ``high`` ``unit``s (``high`` None: no upper bound)."""

    def check(value: T) -> T:
        n = len(value) if isinstance(value, Sized) else 0
        if n < low:
            raise ValueError(f"should have at least {low} {unit}{'s' if low != 1 else ''}")
        if high is not None and n > high:
            raise ValueError(f"should have at most {high} {unit}s, got {n}")
        return value

    return AfterValidator(check)


def _drop_defaults(schema: dict[str, Any]) -> None:
    for prop in schema.get("properties", {}).values():
        if isinstance(prop, dict):
            prop.pop("default", None)


class StrictArgs(BaseModel):
    """Base of the tools' argument models: Python defaults stay, the JSON schema shows none
    (the descriptions say them), so strict tool calling takes the schema as it is."""

    model_config = ConfigDict(json_schema_extra=_drop_defaults)
