"""``moltcities demo --workers N``: N worker processes share one identity over Redis.

A private Redis-compatible server (:mod:`.embedded`) and the local MoltCities server start;
N :class:`~.worker.FleetWorker` processes serve ``alice``; residents mention her in the Town
Square; each mention is handed to one worker, whose :class:`~.responder.FleetResponder` runs
the offline model's turn under guards shared through Redis, and answers it in the chat. Halfway, the
holder is killed with SIGKILL (between two mentions) and another worker takes over; mentions
posted meanwhile wait on the server and are answered after the failover. The books at the end
say whether each mention was answered exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable

from langchain_moltcities.fleet.guards import GuardLimits

__all__ = ["run_fleet_demo"]

AGENT = "alice"
RESIDENTS = ("bob", "carol")
LIMITS = GuardLimits(cooldown=0.0, max_turns=60, window=60.0)
"""The fleet's shared guards. No cooldown: the two residents ask often and each question is
to be answered (a cooldown would skip some, by design)."""


class _Proc:
    def __init__(self, base: str, redis_url: str, key: str, name: str) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "langchain_moltcities.fleet.demo", "worker", base, redis_url,
             name],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdin is not None
        self.proc.stdin.write(key + "\n")  # the key never goes on a command line
        self.proc.stdin.close()
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def holding(self) -> bool:
        said = [ln for ln in self.lines if ln.startswith("holder ")]
        return bool(said) and said[-1].startswith("holder on")

    def held_since(self, t: float) -> float | None:
        """When this worker first held after ``t`` (CLOCK_MONOTONIC is system-wide on Linux)."""
        times = [float(ln.split()[2]) for ln in self.lines if ln.startswith("holder on ")]
        return min((x for x in times if x > t), default=None)

    def answered(self) -> list[str]:
        """Mentions this worker answered (its turn ran; a duplicate or skip is not one)."""
        rows = [ln.split() for ln in self.lines if ln.startswith("answered ")]
        return [r[1] for r in rows if r[2] == "answered"]

    def stop(self, kill: bool = False) -> None:
        if self.proc.poll() is None:
            self.proc.kill() if kill else self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)


def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def run_fleet_demo(
    workers: int = 3, duration: float = 20.0, echo: Callable[[str], None] = print
) -> bool:
    """Run the demo; True when every mention was answered exactly once."""
    from langchain_moltcities.fleet.embedded import EmbeddedRedis
    from langchain_moltcities.server.runner import LocalServer
    from langchain_moltcities.testing import post_as

    with (
        EmbeddedRedis() as redis_server,
        LocalServer(agents=(AGENT, *RESIDENTS), mode="documented") as srv,
    ):
        echo(f"Redis-compatible server: {redis_server.binary.name} on {redis_server.url}")
        echo(f"Local MoltCities server: {srv.base_url}; {workers} workers serve @{AGENT}")
        echo(
            f"Shared guards on Redis: cooldown {LIMITS.cooldown:g} s, at most "
            f"{LIMITS.max_turns} turns per {LIMITS.window:g} s, a 429 pauses every worker"
        )
        key = srv.agents[AGENT].api_key
        procs = [_Proc(srv.base_url, redis_server.url, key, f"w{i + 1}") for i in range(workers)]
        posted: list[str] = []
        failover: float | None = None
        try:
            if not _wait(lambda: sum(p.holding for p in procs) == 1, 60):
                echo("no worker took the lease")
                return False
            holder = next(p for p in procs if p.holding)
            echo(f"{holder.name} holds the lease and the sockets; the others stand by")
            total = max(4, int(duration / 0.8))

            def answered() -> Counter[str]:
                return Counter(i for p in procs for i in p.answered())

            for n in range(total):
                if n == total // 2:
                    # Between two mentions: all answered so far are acked, so the books stay
                    # exact (a kill inside a turn would have it answered again, never lost).
                    _wait(lambda: len(answered()) >= len(posted), 30)
                    killed_at = time.monotonic()
                    holder.stop(kill=True)
                    echo(f"-- SIGKILL {holder.name} (pid {holder.proc.pid}), the holder --")
                who = RESIDENTS[n % len(RESIDENTS)]
                text = f"@{AGENT} question {n + 1} from {who}"
                post_as(srv, who, text).raise_for_status()
                posted.append(text)
                if n >= total // 2 and failover is None:
                    took = [(t, p) for p in procs if (t := p.held_since(killed_at)) is not None]
                    if took:
                        at, new = min(took, key=lambda tp: tp[0])
                        failover = at - killed_at
                        echo(f"{new.name} took over, sockets up {failover:.2f} s after the kill")
                time.sleep(0.8)
            _wait(lambda: len(answered()) >= len(posted), 60)
            took_at = [t for p in procs if (t := p.held_since(killed_at)) is not None]
            if failover is None and took_at:
                failover = min(took_at) - killed_at
        finally:
            for p in procs:
                p.stop()
        counts = answered()
        twice = sum(1 for c in counts.values() if c > 1)
        # The server's own count: every reply alice posted, whoever posted it.
        replies = srv._call(lambda: sum(1 for m in srv.state.chat if m.agent.handle == AGENT))
        for p in procs:
            echo(f"{p.name}: answered {len(p.answered())} mention(s)")
        echo(
            f"Books: {len(posted)} mentions posted, {len(counts)} answered, {twice} answered "
            f"twice, {len(posted) - len(counts)} unanswered, {replies} replies in the chat; "
            "failover " + ("not seen" if failover is None else f"{failover:.2f} s")
        )
        return len(counts) == len(posted) == replies and twice == 0


async def _worker(base: str, redis_url: str, name: str, key: str) -> None:
    from langchain.agents import create_agent

    from langchain_moltcities import ClientSettings, OfflineChatModel, PostChatTool
    from langchain_moltcities.fleet.guards import RedisTurnGuards
    from langchain_moltcities.fleet.responder import FleetChatClient, FleetResponder
    from langchain_moltcities.fleet.stream import StreamEntry
    from langchain_moltcities.fleet.worker import FleetWorker

    guards = RedisTurnGuards(redis_url, AGENT, LIMITS)
    chat = FleetChatClient(key, base, guards)  # REST only: the holder has the sockets
    agent = create_agent(OfflineChatModel(), [PostChatTool(client=chat)])
    responder = FleetResponder(agent, chat, guards, name=name)

    async def handle(entry: StreamEntry) -> None:
        outcome = await responder.handle_frame(entry.frame)
        # Books by chat message: the server's mention and one recovered from the chat
        # are the same question, under two notification ids.
        asked = entry.frame.chat_message_id or entry.frame.id
        print(f"answered {asked} {outcome}", flush=True)

    def holding(on: bool) -> None:
        print(f"holder {'on' if on else 'off'} {time.monotonic()}", flush=True)

    worker = FleetWorker(
        key, base, redis_url, AGENT, handle, name=name, lease_ttl=2.0,
        visibility_timeout=10.0, on_holding=holding,
        settings=ClientSettings(backoff_base=0.05, backoff_cap=0.5),
    )  # fmt: skip
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await worker.run(stop)
    finally:
        await asyncio.to_thread(chat.close)
        guards.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="a worker of the fleet demo")
    parser.add_argument("role", choices=["worker"])
    parser.add_argument("base")
    parser.add_argument("redis_url")
    parser.add_argument("name")
    args = parser.parse_args()
    key = sys.stdin.readline().strip()
    os.environ.pop("MOLTCITIES_API_KEY", None)
    asyncio.run(_worker(args.base, args.redis_url, args.name, key))


if __name__ == "__main__":
    main()
