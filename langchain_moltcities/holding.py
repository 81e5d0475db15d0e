"""How buffered frames are held: as compact JSON bytes, long texts cut to a byte bound.

A parsed frame costs a handful of live Python objects (the model, its dicts, their values);
100,000 of them cost hundreds of megabytes and slow every garbage collection. Held as the
JSON bytes they arrived in, they cost little more than those bytes, and the collector never
walks them. A reader gets the model back, parsed again on the way out (only what is read).

Pure: no I/O, no locks.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Generic, TypeVar, cast

from langchain_moltcities.protocol import InvalidFrame, ServerFrame, parse_frame

__all__ = ["CUT_NOTE", "FrameCodec"]

CUT_NOTE = " …[cut in memory: {total:,} characters in all]"
_SMALLEST_CUT = 64  # characters; below this a cut string says nothing useful
_KEPT_KEYS = 100  # a payload with more keys than this is summarised, not kept key by key
F = TypeVar("F", bound=ServerFrame)


class FrameCodec(Generic[F]):
    """Packs frames (of ``kinds``) to bytes of at most ``max_item_bytes``, and back."""

    def __init__(self, kinds: tuple[type[F], ...], max_item_bytes: int) -> None:
        if max_item_bytes < 1024:
            raise ValueError("max_item_bytes must be at least 1024")
        self.kinds = kinds
        self.max_item_bytes = max_item_bytes

    def pack(self, frame: F, raw: bytes | None) -> tuple[bytes, bool]:
        """The bytes to hold for ``frame`` (``raw`` is what arrived, if known) and whether
        long texts had to be cut to fit ``max_item_bytes``."""
        if raw is None:
            raw = type(frame).__pydantic_serializer__.to_json(frame)
        if len(raw) <= self.max_item_bytes:
            return raw, False
        return self._cut(frame.model_dump(mode="json"), type(frame).model_fields), True

    def unpack(self, held: bytes) -> F:
        """The frame back from its held bytes."""
        frame = parse_frame(held)
        if not isinstance(frame, self.kinds):  # only bytes we took in get here: a bug, say so
            what = frame.error if isinstance(frame, InvalidFrame) else type(frame).__name__
            raise ValueError(f"a held frame did not parse back: {what}")
        return cast(F, frame)

    def _cut(self, obj: dict[str, Any], fields: Iterable[str]) -> bytes:
        # Halve the longest string allowed until the whole fits; each cut string keeps a note
        # with its full length so a reader knows how much is missing.
        limit = max(self.max_item_bytes // 4, _SMALLEST_CUT)
        while True:
            out = _dumps(_cut_strings(obj, limit))
            if len(out) <= self.max_item_bytes:
                return out
            if limit <= _SMALLEST_CUT:
                break
            limit = max(limit // 2, _SMALLEST_CUT)
        # Too many pieces to fit even cut short (e.g. a huge list): keep the texts of the
        # frame and of its payload, and say what each deeper or larger container held; past
        # that (thousands of extra keys on the frame itself), keep only the model's fields.
        out = _dumps({k: _summarise(v, limit, 1) for k, v in obj.items()})
        if len(out) <= self.max_item_bytes:
            return out
        return _dumps({k: _summarise(obj[k], limit, 1) for k in fields if k in obj})


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _cut_text(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + CUT_NOTE.format(total=len(text))


def _cut_strings(value: Any, limit: int) -> Any:
    if isinstance(value, str):
        return _cut_text(value, limit)
    if isinstance(value, dict):
        return {k: _cut_strings(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [_cut_strings(v, limit) for v in value]
    return value


def _summarise(value: Any, limit: int, depth: int) -> Any:
    if isinstance(value, str):
        return _cut_text(value, limit)
    if isinstance(value, dict):
        if depth >= 2 or len(value) > _KEPT_KEYS:
            return {"note": f"…[cut in memory: an object of {len(value):,} keys]"}
        return {k: _summarise(v, limit, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [f"…[cut in memory: a list of {len(value):,} items]"]
    return value
