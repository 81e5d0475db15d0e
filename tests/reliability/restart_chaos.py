"""Restart chaos: an agent process killed with SIGKILL again and again on one state file.

The agent (``restart_agent``: client + responder on the offline model) runs against the local
server while residents mention it, chat flows and notifications arrive. Each incarnation is
killed at a seeded random moment after it is ready, and a new one starts on the same file.
The books, against the server's journal and the agents' log:

- every mention answered, none answered twice (each resident mentions the agent once, so
  "answered" is the resident's @handle in one of the agent's replies);
- nothing acked is shown again; an item shown again is flagged as a re-delivery (a read
  makes what it returns durable before returning, so no kill can lose the flag);
- every notification the server raised is acked in the end: shown, it is shown again after
  each kill until acked (only a kill between an ack and its log line may hide one, so an
  ``acking`` line counts);
- every notification the server raised is shown at least once. The live server forgets a
  push as it sends it, so one may be lost to a kill only while it waits for the client's
  write behind: received (or, never received, pushed) less than ``DELIVERY_WINDOW`` before
  the kill. Those are counted (``lost_in_window``, with how close they were), never
  excused outside the window, and never in the documented dialect (its server redelivers);
- every chat message posted since the agent first started was read, except inside a gap
  the client reported.

``python -m tests.reliability.restart_chaos`` runs the long version (``make soak``).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from langchain_moltcities.server.events import Mode
from langchain_moltcities.server.runner import LocalServer

AGENT = "agent"
# The client stores what arrived every tick (50 ms) and commits at once; the books allow a
# generous multiple for a loaded machine (2 cores shared by many), and report each use.
DELIVERY_WINDOW = 0.5
# Notifications the traffic raises, per dialect (the documented server pushes only the
# documented types it is subscribed to; the live one pushes jobs and follows too).
NOTIFY_TYPES: dict[str, tuple[str, ...]] = {
    "documented": ("inbox.message", "job.application", "job.status", "guestbook.entry"),
    "live": (
        "job.worker_interested",
        "site.followed",
        "inbox.message",
        "job.submitted",
        "job.approved",
        "guestbook.entry",
        "job.paid",
    ),
}


@dataclass
class RestartReport:
    mode: str
    seed: int
    kills: int = 0
    incarnations: int = 0
    mentions: int = 0
    replies: int = 0
    chat_posted: int = 0
    chat_read: int = 0
    notifications: int = 0
    shown: int = 0
    redeliveries_flagged: int = 0
    gaps: int = 0
    notifications_shown: int = 0
    lost_in_window: list[tuple[str, float]] = field(default_factory=list)  # (id, s before kill)
    never_shown: list[str] = field(default_factory=list)
    never_acked: list[str] = field(default_factory=list)
    unanswered: list[str] = field(default_factory=list)
    answered_twice: list[str] = field(default_factory=list)
    acked_reappeared: list[str] = field(default_factory=list)
    unflagged_redeliveries: list[str] = field(default_factory=list)
    chat_missing: list[str] = field(default_factory=list)
    kill_times: list[float] = field(default_factory=list)

    def problems(self) -> list[str]:
        out = []
        if self.unanswered:
            out.append(f"mentions never answered: {self.unanswered}")
        if self.answered_twice:
            out.append(f"mentions answered twice: {self.answered_twice}")
        if self.acked_reappeared:
            out.append(f"acked notifications shown again: {self.acked_reappeared}")
        if self.unflagged_redeliveries:
            out.append(f"re-deliveries not flagged: {self.unflagged_redeliveries}")
        if self.chat_missing:
            out.append(f"chat never read (outside any reported gap): {self.chat_missing}")
        if self.never_shown:
            out.append(f"notifications never shown (outside the window): {self.never_shown}")
        if self.never_acked:
            out.append(f"notifications shown, never shown again until acked: {self.never_acked}")
        if self.kills < 1:
            out.append("no kill happened")
        return out

    def summary(self) -> str:
        return (
            f"[{self.mode} seed={self.seed}] {self.kills} kills, {self.incarnations} "
            f"incarnations; mentions {self.mentions}, replies {self.replies}; chat posted "
            f"{self.chat_posted}, read {self.chat_read}; notifications {self.notifications}, "
            f"shown {self.shown} (re-deliveries flagged {self.redeliveries_flagged}), "
            f"{self.notifications_shown} of them shown at least once, "
            f"{len(self.lost_in_window)} lost within {DELIVERY_WINDOW:g} s of a kill "
            f"{[round(d, 3) for _, d in self.lost_in_window]}; gaps reported {self.gaps}"
        )


class _Agent:
    """One agent process at a time, on the same state file and log."""

    def __init__(
        self, base_url: str, key: str, state: Path, log: Path, out: Path, think: float
    ) -> None:
        self.base_url, self.key, self.state, self.log, self.out = base_url, key, state, log, out
        self.think = think
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0

    def start(self) -> None:
        env = {**os.environ, "MOLTCITIES_API_KEY": self.key, "PYTHONUNBUFFERED": "1"}
        cmd = [sys.executable, "-m", "tests.reliability.restart_agent"]
        cmd += ["--base-url", self.base_url, "--state", str(self.state), "--log", str(self.log)]
        cmd += ["--think", str(self.think)]
        with self.out.open("ab") as out:
            self.proc = subprocess.Popen(
                cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=_repo_root()
            )
        self.started += 1

    def ready_count(self) -> int:
        return sum(1 for line in _lines(self.log) if line[2] == "ready")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
            self.proc = None


def _repo_root() -> str:
    return str(Path(__file__).resolve().parents[2])


def _lines(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [ln.split(" ", 3) for ln in path.read_text().splitlines() if ln.count(" ") >= 2]


def _wait(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


def run_restart_chaos(
    mode: Mode,
    seed: int,
    *,
    kills: int = 3,
    mentions: int = 12,
    chat_rate: float = 5.0,
    notify_rate: float = 5.0,
    live_for: tuple[float, float] = (0.3, 2.0),
    think: float = 0.15,
    settle_timeout: float = 90.0,
    workdir: Path | None = None,
    log: Callable[[str], None] = print,
) -> RestartReport:
    rng = random.Random(seed)
    report = RestartReport(mode=mode, seed=seed)
    residents = [f"r{i:03d}" for i in range(mentions)]
    tmp = Path(workdir or tempfile.mkdtemp(prefix="moltcities-restart-"))
    state, agent_log, agent_out = tmp / "agent.db", tmp / "agent.log", tmp / "agent.out"
    with LocalServer(
        mode=mode,
        agents=(AGENT, "chatter"),
        idle_timeout=300.0,
        idle_check_interval=0.5,
        chat_rate_limit=(1_000_000, 1.0),
    ) as srv:
        for who in residents:
            # Named by their handle: a live mention names its author only by display name
            # until the client learns the handle, and the books read the replies' @handles.
            srv.register_agent(who, name=who)
        agent = _Agent(srv.base_url, srv.agents[AGENT].api_key, state, agent_log, agent_out, think)
        stop = threading.Event()
        errors: list[str] = []

        def post(handle: str, text: str) -> bool:
            key = srv.agents[handle].api_key
            try:
                httpx.post(
                    f"{srv.base_url}/api/chat",
                    json={"message": text},
                    headers={"Authorization": f"Bearer {key}"},
                    timeout=5.0,
                ).raise_for_status()
            except httpx.HTTPError as exc:
                errors.append(f"{handle} could not post: {exc}")
                return False
            return True

        def traffic() -> None:
            trng = random.Random(seed + 1)
            pending = list(residents)
            trng.shuffle(pending)
            i = 0
            next_chat = next_note = next_mention = time.monotonic()
            while not stop.is_set():
                now = time.monotonic()
                if now >= next_chat:
                    post("chatter", f"chat {i} in the square")
                    next_chat = now + trng.expovariate(chat_rate)
                if now >= next_note:
                    kinds = NOTIFY_TYPES[mode]
                    kind = kinds[report.notifications % len(kinds)]
                    sender = srv.agents["chatter"].id
                    srv.notify(AGENT, kind, _payload(kind, f"{seed}x{i}", sender))
                    report.notifications += 1
                    next_note = now + trng.expovariate(notify_rate)
                if pending and now >= next_mention:
                    who = pending.pop()
                    text = f"@{AGENT} hello from {who}, how are you?"
                    if not post(who, text) and pending_mentions(srv, [who]):
                        pending.append(who)  # it never landed (a loaded machine): try again
                    next_mention = now + trng.uniform(0.2, 1.5)
                i += 1
                time.sleep(0.01)

        agent.start()
        _wait(lambda: agent.ready_count() >= 1, 60, "the first agent to be ready")
        first_ready = time.time()
        producer = threading.Thread(target=traffic, name="restart-traffic", daemon=True)
        producer.start()
        try:
            for _ in range(kills):
                _wait(lambda: agent.ready_count() >= agent.started, 60, "the agent to be ready")
                time.sleep(rng.uniform(*live_for))
                agent.kill()
                report.kill_times.append(time.time())
                report.kills += 1
                if rng.random() < 0.3:
                    time.sleep(rng.uniform(0.1, 1.0))  # down a while: chat piles up
                agent.start()
            _wait(lambda: agent.ready_count() >= agent.started, 60, "the last agent to be ready")
            _wait(lambda: not pending_mentions(srv, residents), 30, "every mention to be posted")
            stop.set()
            producer.join(timeout=10)

            def settled() -> bool:
                books = _books(srv, agent_log, residents, first_ready, report)
                return not (
                    books.unanswered or books.chat_missing or books.never_shown or books.never_acked
                )

            try:
                _wait(settled, settle_timeout, "the books to balance")
            except TimeoutError as exc:
                log(str(exc))
        finally:
            stop.set()
            agent.kill()
        report.incarnations = agent.started
        final = _books(srv, agent_log, residents, first_ready, report)
        for name in (
            "unanswered",
            "answered_twice",
            "acked_reappeared",
            "unflagged_redeliveries",
            "chat_missing",
            "never_shown",
            "never_acked",
            "lost_in_window",
        ):
            setattr(report, name, getattr(final, name))
        for name in (
            "mentions",
            "replies",
            "chat_posted",
            "chat_read",
            "shown",
            "notifications_shown",
        ):
            setattr(report, name, getattr(final, name))
        report.redeliveries_flagged, report.gaps = final.redeliveries_flagged, final.gaps
        if errors:
            log(f"traffic errors: {errors[:5]}")
        if report.problems():
            journal = srv._call(
                lambda: [(m.id, m.agent.handle, m.created_at, m.message) for m in srv.state.chat]
            )
            (tmp / "server-chat.txt").write_text("\n".join(" ".join(j) for j in journal))
            log(f"agent log, output and the server's chat kept in {tmp}")
    return report


def _payload(kind: str, tag: str, sender: str) -> dict[str, Any]:
    """A payload of ``kind`` with ids of its own (REST ids derive from them), sent by the
    agent ``sender`` (a real one: an unknown id costs a handle look-up, and a burst of them
    would crowd out the look-ups the mentions' replies need)."""
    if kind == "inbox.message":
        return {"message_id": f"m{tag}", "from_handle": "chatter", "preview": f"n{tag}"}
    if kind == "guestbook.entry":
        return {"entry_id": f"e{tag}", "site_slug": AGENT, "author": "chatter", "message": "hi"}
    if kind == "site.followed":
        return {"site_id": "s", "site_slug": AGENT, "follower_id": sender}
    return {"job_id": f"j{tag}", "job_title": f"job {tag}", "worker_id": sender}


def pending_mentions(srv: LocalServer, residents: list[str]) -> list[str]:
    posted = srv._call(lambda: {m.agent.handle for m in srv.state.chat})
    return [r for r in residents if r not in posted]


def _in_gap(created: str, gaps: list[dict[str, Any]]) -> bool:
    for gap in gaps:
        start, end = gap.get("after") or gap.get("start"), gap.get("before") or gap.get("end")
        if (start is None or created > str(start)) and (end is None or created < str(end)):
            return True
    return False


def _books(
    srv: LocalServer, agent_log: Path, residents: list[str], first_ready: float, base: Any
) -> RestartReport:
    out = RestartReport(mode=base.mode, seed=base.seed)
    chat = srv._call(
        lambda: [(m.id, m.agent.handle, m.message, m.created_at) for m in srv.state.chat]
    )
    replies = [text for _, who, text, _ in chat if who == AGENT]
    out.replies = len(replies)
    mentioned = [who for _, who, _, _ in chat if who in residents]
    out.mentions = len(mentioned)
    for who in mentioned:
        n = sum(len(re.findall(rf"@{who}\b", text)) for text in replies)
        if n == 0:
            out.unanswered.append(who)
        elif n > 1:
            out.answered_twice.append(who)
    lines = _lines(agent_log)
    gaps: list[dict[str, Any]] = []
    read: set[str] = set()
    acked_at: dict[str, float] = {}
    shown_at: dict[str, float] = {}
    kills = base.kill_times
    received: dict[str, float] = {}  # id -> when it last reached an agent process
    readies: list[float] = []
    acking: set[str] = set()
    for line in lines:
        at, what = float(line[0]), line[2]
        rest = line[3] if len(line) > 3 else ""
        if what == "recv":
            received[rest] = at
        elif what == "ready":
            readies.append(at)
        elif what == "acking":
            acking.add(rest)
        elif what == "chat":
            read.add(rest)
            out.chat_read += 1
        elif what == "gap":
            gaps.append(json.loads(rest))
        elif what == "acked":
            acked_at.setdefault(rest, at)
        elif what == "shown":
            nid, flag = rest.split(" ")
            out.shown += 1
            if nid in acked_at:
                out.acked_reappeared.append(nid)
            if flag == "1":
                out.redeliveries_flagged += 1
            elif nid in shown_at:
                out.unflagged_redeliveries.append(nid)
            shown_at.setdefault(nid, at)
    out.gaps = len(gaps)
    acking.update(acked_at)
    _notification_books(srv, base.mode, shown_at, received, readies, kills, acking, out)
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(first_ready))
    posted = [(cid, created) for cid, _, _, created in chat if created >= since]
    out.chat_posted = len(posted)
    out.chat_missing = [
        cid for cid, created in posted if cid not in read and not _in_gap(created, gaps)
    ]
    return out


def _notification_books(
    srv: LocalServer,
    mode: str,
    shown_at: dict[str, float],
    received: dict[str, float],
    readies: list[float],
    kills: list[float],
    acking: set[str],
    out: RestartReport,
) -> None:
    """Every notification the server raised was shown (or lost within the window of a kill),
    and every one shown was acked."""
    journal = srv._call(
        lambda: [
            (n.id, n.event.rest_id, n.event.event_type, n.created_at, bool(n.sent_to), n.flushed)
            for a in srv.state.agents.values()
            if a.handle == AGENT
            for n in srv.state.notifications[a.id]
        ]
    )
    for nid, rest_id, kind, created, pushed, flushed in journal:
        if kind not in NOTIFY_TYPES[mode]:
            continue  # mentions: the books above answer for them
        names = {nid, rest_id} - {None}  # a REST poll names it by its REST id
        if names & shown_at.keys():
            out.notifications_shown += 1
            if not names & acking:
                out.never_acked.append(nid)
            continue
        if not pushed or mode != "live":
            out.never_shown.append(nid)  # not yet (settling), or the documented server's own
            continue
        # When it was last in our hands: received, else pushed (a queued one goes out as the
        # next incarnation connects, just before it says ready).
        t = received.get(nid)
        slack = 0.0
        if t is None:
            t = _epoch(created)
            if flushed:
                t = min((r for r in readies if r >= t), default=t)
            # A push may also reach a process killed a moment before, whose death the server
            # has not noticed yet.
            slack = DELIVERY_WINDOW
        next_kill = min((k for k in kills if k >= t - slack), default=None)
        if next_kill is not None and abs(next_kill - t) < DELIVERY_WINDOW:
            out.lost_in_window.append((nid, next_kill - t))
        else:
            out.never_shown.append(nid)


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def main() -> int:
    seconds = float(os.environ.get("SOAK_SECONDS", "180"))
    seed = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(1_000_000))
    failed = False
    modes: list[Mode] = ["documented", "live"]
    sections: list[str] = []
    for i, mode in enumerate(modes):
        # About one kill per 6 s per mode (a restart imports for a few seconds).
        kills = max(3, int(seconds / 2 / 6))
        report = run_restart_chaos(
            mode, seed + i, kills=kills, mentions=kills * 2, live_for=(0.3, 3.0)
        )
        print(report.summary(), flush=True)
        for problem in report.problems():
            print(f"PROBLEM: {problem}", flush=True)
            failed = True
        verdict = "yes" if not report.problems() else "NO: " + "; ".join(report.problems())
        sections.append(f"```\n{report.summary()}\n```\nBooks balanced: {verdict}")
    out = Path(__file__).with_name("RESTART_SOAK.md")
    out.write_text(
        "# Restart soak\n\n"
        f"`SOAK_SECONDS={seconds:g} CHAOS_SEED={seed} make soak` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: an agent process (client + "
        "responder, offline model) killed with SIGKILL at seeded random moments and restarted "
        "on the same state file. Replay with the same seed.\n\n" + "\n\n".join(sections) + "\n"
    )
    print(f"figures written to {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
