"""A worker process whose "agent" uses the MoltCities tools through a FleetClient:
``python -m tests.fleet.tools_worker BASE_URL REDIS_URL IDENTITY NAME``, the API key on stdin.

Prints ``holder on|off`` as it starts or stops holding, ``shown ID 0|1`` for each notification
``check_notifications`` showed (1: flagged as shown before), ``acked ID`` for each that
``ack_notification`` acknowledged, and ``chat ID`` for each message ``read_town_square`` showed.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

from langchain_moltcities import ClientSettings, MoltCitiesToolkit
from langchain_moltcities.fleet import FleetClient


def call(tool: Any, args: dict[str, Any]) -> Any:
    """Invoke as a model's tool call does: the ToolMessage carries the artifact."""
    return tool.invoke({"name": tool.name, "args": args, "id": "call", "type": "tool_call"})


def main(base_url: str, redis_url: str, identity: str, name: str) -> None:
    api_key = sys.stdin.readline().strip()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def holding(on: bool) -> None:
        print(f"holder {'on' if on else 'off'}", flush=True)

    settings = ClientSettings(backoff_base=0.02, backoff_cap=0.2, close_timeout=0.2)
    client = FleetClient(
        api_key, base_url, redis_url=redis_url, identity=identity, name=name, lease_ttl=1.0,
        visibility_timeout=3.0, settings=settings, on_holding=holding,
    )  # fmt: skip
    tools = {t.name: t for t in MoltCitiesToolkit(client=client, first_read_wait=0).get_tools()}
    print("ready", flush=True)
    try:
        while not stop.is_set():
            news = call(tools["check_notifications"], {"limit": 5}).artifact["notifications"]
            for n in news:
                print(f"shown {n['id']} {int(n['redelivery'])}", flush=True)
            if news:
                done = call(tools["ack_notification"], {"notification_id": [n["id"] for n in news]})
                for i in done.artifact["acknowledged"]:
                    print(f"acked {i}", flush=True)
            for m in call(tools["read_town_square"], {"limit": 50}).artifact["messages"]:
                print(f"chat {m['id']}", flush=True)
            stop.wait(0.05)
    finally:
        client.close()


if __name__ == "__main__":
    main(*sys.argv[1:5])
