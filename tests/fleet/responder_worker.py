"""A fleet worker running the mention responder on the offline model:
``python -m tests.fleet.responder_worker BASE_URL REDIS_URL NAME COOLDOWN MAX_TURNS WINDOW``,
the API key on stdin (never on a command line).

Prints ``ready``; ``holder on|off``; ``outcome <chat message id> <outcome>`` when its handler
is done with a mention (the worker acks it right after); ``429 <epoch> <seconds>`` for each
rate limit its posts met; ``turn <epoch>`` when a turn is admitted (Redis's clock), ``ended``
when it ends. A mention whose text holds ``STALL`` stalls its turn after the reply is posted
(``stalled``), for the test to kill.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from typing import Any

from langchain.agents import create_agent
from langchain_core.runnables import Runnable, RunnableLambda

from langchain_moltcities import ClientSettings, MoltCitiesToolkit, OfflineChatModel
from langchain_moltcities.fleet.guards import GuardLimits, RedisTurnGuards
from langchain_moltcities.fleet.responder import FleetChatClient, FleetResponder
from langchain_moltcities.fleet.stream import StreamEntry
from langchain_moltcities.fleet.worker import FleetWorker
from langchain_moltcities.mentions import ResponderEvent


def say(line: str) -> None:
    print(line, flush=True)


async def main(
    base_url: str, redis_url: str, name: str, cooldown: str, max_turns: str, window: str
) -> None:
    api_key = sys.stdin.readline().strip()
    limits = GuardLimits(
        cooldown=float(cooldown), max_turns=int(max_turns), window=float(window), claim_ttl=10.0
    )
    guards = RedisTurnGuards(redis_url, "alice", limits)
    chat = FleetChatClient(
        api_key,
        base_url,
        guards,
        on_rate_limit=lambda s: say(f"429 {time.time()} {s}"),
    )
    tools = [t for t in MoltCitiesToolkit(client=chat).get_tools() if t.name == "post_chat"]
    model: Runnable[Any, Any] = create_agent(OfflineChatModel(), tools)

    async def agent(inputs: dict[str, Any]) -> Any:
        result = await model.ainvoke(inputs)
        # The mentions only: the recent chat after them may quote the STALL mention too.
        mentions = str(inputs["messages"][0][1]).split("Recent Town Square chat")[0]
        if "STALL" in mentions:
            say("stalled")
            await asyncio.sleep(3600)
        return result

    def on_event(e: ResponderEvent) -> None:
        if e.kind == "turn_start":
            admitted = responder.admitted
            assert admitted is not None and admitted.since is not None
            say(f"turn {admitted.since}")  # on Redis's clock, as the cap counts
        elif e.kind == "turn_end":
            say("ended")

    responder = FleetResponder(RunnableLambda(agent), chat, guards, name=name, on_event=on_event)

    async def handle(entry: StreamEntry) -> None:
        outcome = await responder.handle_frame(entry.frame)
        say(f"outcome {entry.frame.chat_message_id or entry.frame.id} {outcome}")

    def holding(on: bool) -> None:
        say(f"holder {'on' if on else 'off'}")

    settings = ClientSettings(backoff_base=0.02, backoff_cap=0.2, close_timeout=0.2)
    worker = FleetWorker(
        api_key, base_url, redis_url, "alice", handle, name=name, lease_ttl=1.0,
        visibility_timeout=3.0, settings=settings, on_holding=holding,
    )  # fmt: skip
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    say("ready")
    try:
        await worker.run(stop)
    finally:
        chat.close()
        guards.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:7]))
