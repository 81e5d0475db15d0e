"""A client process for the kill -9 notification tests, driven line by line on stdin.

Commands (one a line) and what it prints back on stdout:

- ``read N``: ``shown <id> <event type> <redelivery 0/1>`` per notification read, then ``done``;
- ``ack <id> ...``: acks them, then ``done``;
- ``stored N``: waits until the state holds N delivered, unacked notifications and is
  committed (what a kill must not lose from here on), then ``done``.

It prints ``ready`` once connected and ``recv <id>`` for each notification it accepts.
Run: ``python -m tests.state.notified_agent --base-url URL --state FILE_OR_URL`` with the key
in ``MOLTCITIES_API_KEY``.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Any

from langchain_moltcities import MoltCitiesClient
from langchain_moltcities.protocol import NotificationFrame

from .helpers import fast_settings

_out = threading.Lock()


def _say(*words: object) -> None:
    with _out:
        sys.stdout.write(" ".join(map(str, words)) + "\n")
        sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--state", required=True)
    args = parser.parse_args()
    client = MoltCitiesClient(base_url=args.base_url, settings=fast_settings(), state=args.state)

    def heard(frame: Any) -> None:
        if isinstance(frame, NotificationFrame):
            _say("recv", frame.id)

    client.add_frame_listener(heard)
    client.start()
    if not client.wait_connected(30):
        _say("not-connected")
        return
    _say("ready")
    for line in sys.stdin:
        cmd, *rest = line.split()
        if cmd == "read":
            got = client.read_notifications(limit=int(rest[0]))
            for n in got.items:
                _say("shown", n.id, n.event_type, int(n.id in got.redelivered))
        elif cmd == "ack":
            client.ack(rest)
        elif cmd == "stored":
            state = client.agent_state
            assert state is not None
            deadline = time.monotonic() + 30
            while len(state.members("unread")) < int(rest[0]) and time.monotonic() < deadline:
                time.sleep(0.01)
            state.flush()
        _say("done")


if __name__ == "__main__":
    main()
