"""An agent process for the restart tests: client + responder (offline model) on a state file.

It answers mentions through ``create_agent`` and the toolkit, reads the Town Square all the
time, and writes one line per fact to ``--log`` (a ``write`` per line, so a ``kill -9``
loses none already written)::

    <wall time> <pid> ready|recv <id>|shown <id> <redelivery 0/1>|acking <id>|acked <id>
                      |chat <id>|gap <json>

Besides the responder's turns (which read and ack everything), the main loop reads the
notifications that are not mentions every ``--read-every`` seconds and acks each
``--ack-after`` seconds after it was shown, so a kill finds some delivered and not yet read,
and some shown and not yet acked. ``acking`` is written before an ack, ``acked`` after it.

Run: ``python -m tests.reliability.restart_agent --base-url URL --state FILE --log FILE``
with the key in ``MOLTCITIES_API_KEY``.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda

from langchain_moltcities import MoltCitiesClient
from langchain_moltcities.mentions import MentionResponder
from langchain_moltcities.offline_model import OfflineChatModel
from langchain_moltcities.protocol import (
    DOCUMENTED_EVENT_TYPES,
    LIVE_EVENT_TYPES,
    MENTION_EVENT_TYPES,
    ChatFrame,
    NotificationFrame,
)
from langchain_moltcities.settings import ClientSettings
from langchain_moltcities.tools import MoltCitiesToolkit


class _Log:
    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def __call__(self, *words: object) -> None:
        line = " ".join([f"{time.time():.3f}", str(self._pid), *map(str, words)]) + "\n"
        with self._lock:
            os.write(self._fd, line.encode())


class _ToolBooks(BaseCallbackHandler):
    """Logs what the agent was shown and what it acked, from the tools' artifacts."""

    def __init__(self, log: _Log) -> None:
        self.log = log

    def on_tool_start(
        self, serialized: dict[str, Any], input_str: str, *, inputs: Any = None, **kw: Any
    ) -> None:
        if str((serialized or {}).get("name", "")).endswith("ack_notification"):
            ids = inputs.get("notification_id") if isinstance(inputs, dict) else None
            for nid in [ids] if isinstance(ids, str) else ids or []:
                self.log("acking", nid)

    def on_tool_end(self, output: Any, **kw: Any) -> None:
        name = getattr(output, "name", None)
        artifact = getattr(output, "artifact", None)
        if getattr(output, "status", "success") != "success" or not isinstance(artifact, dict):
            return
        if name == "check_notifications":
            for rec in artifact.get("notifications", []):
                self.log("shown", rec["id"], int(bool(rec.get("redelivery"))))
        elif name == "ack_notification":
            for nid in artifact.get("acknowledged") or []:
                self.log("acked", nid)


def _tool_loop(model: OfflineChatModel, client: MoltCitiesClient) -> Runnable[Any, Any]:
    """``create_agent``'s loop (model, tools, model...) without importing langgraph, which
    alone takes seconds to import on a busy machine: restarts are what this process does."""
    tools = {t.name: t for t in MoltCitiesToolkit(client=client).get_tools()}
    bound = model.bind_tools(list(tools.values()))

    def run(inputs: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        messages: list[BaseMessage] = [HumanMessage(str(m[1])) for m in inputs["messages"]]
        for _ in range(10):
            ai = bound.invoke(messages, config)
            messages.append(ai)
            if not ai.tool_calls:
                break
            for call in ai.tool_calls:
                messages.append(tools[call["name"]].invoke(call, config))
        return {"messages": messages}

    return RunnableLambda(run)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--state", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--think", type=float, default=0.0, help="Seconds per model step.")
    parser.add_argument("--ack-after", type=float, default=0.5, help="Seconds shown, unacked.")
    parser.add_argument("--read-every", type=float, default=1.0, help="Notification reads.")
    args = parser.parse_args()
    log = _Log(args.log)
    settings = ClientSettings(backoff_base=0.05, backoff_cap=0.5, backfill_limit=50)
    client = MoltCitiesClient(base_url=args.base_url, settings=settings, state=args.state)

    def heard(frame: object) -> None:
        # When each notification reached this process (its own or one the state restored):
        # the books excuse a loss only within the write-behind window before a kill.
        if isinstance(frame, NotificationFrame) and not frame.is_mention:
            log("recv", frame.id)

    client.add_frame_listener(heard)
    client.start()
    agent = _tool_loop(OfflineChatModel(think_time=args.think), client)
    responder = MentionResponder(
        agent,
        client,
        cooldown=0.0,
        max_turns=1_000_000,
        window=1.0,
        context_messages=0,
        config={"callbacks": [_ToolBooks(log)]},
        on_event=lambda e: log("event", e.kind, ",".join(e.mention_ids), (e.detail or "")[:80]),
    )
    responder.start()
    client.wait_connected(30)
    log("ready")
    gaps_seen: set[str] = set()
    plain = [
        t
        for t in dict.fromkeys(DOCUMENTED_EVENT_TYPES + LIVE_EVENT_TYPES)
        if t not in MENTION_EVENT_TYPES
    ]
    unacked: dict[str, float] = {}
    next_read = time.monotonic()
    while True:
        if time.monotonic() >= next_read:
            next_read = time.monotonic() + args.read_every
            got = client.read_notifications(event_types=plain)
            for n in got.items:
                log("shown", n.id, int(n.id in got.redelivered))
                unacked[n.id] = time.monotonic()
        due = [i for i, at in unacked.items() if time.monotonic() - at >= args.ack_after]
        if due:
            for nid in due:
                log("acking", nid)
            client.ack(due)
            for nid in due:
                del unacked[nid]
                log("acked", nid)
        for item in client.read_town_square(kinds="chat").items:
            if isinstance(item, ChatFrame):
                log("chat", item.id)
        for gap in getattr(client, "chat_gaps", lambda: [])():
            key = json.dumps(gap, sort_keys=True, default=str)
            if key not in gaps_seen:
                gaps_seen.add(key)
                log("gap", key)
        time.sleep(0.02)


if __name__ == "__main__":
    main()
