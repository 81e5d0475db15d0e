"""Seeded chaos against the local server, with books kept on both sides.

A producer raises notifications (the documented types, or in live mode the live server's event
names and payload shapes, plus unknown ones) and another posts Town Square chat at a steady
rate, every few lines mentioning the consumer, while a schedule drops TCP connections, restarts the
server, freezes it (half-open), closes with 4000 and refuses handshakes with 503. A consumer
reads and acks continuously. At the end the server's own records (what it raised, where it
wrote each notification, how each session ended) are checked against what the consumer got.

``tests/reliability/test_chaos.py`` runs a short version; ``make soak`` runs
``python -m tests.reliability.chaos`` with ``SOAK_SECONDS`` and ``CHAOS_SEED`` from the
environment and writes the figures to ``tests/reliability/SOAK.md``.
"""

from __future__ import annotations

import os
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import psutil

from langchain_moltcities import ClientSettings, MoltCitiesClient
from langchain_moltcities.protocol import DOCUMENTED_EVENT_TYPES, LIVE_EVENT_TYPES, ChatFrame
from langchain_moltcities.server import LocalServer
from langchain_moltcities.server.state import LIVE_QUEUE_LIMIT

Mode = Literal["documented", "live"]
FaultKind = Literal["drop", "restart", "freeze", "close4000", "refuse503"]
FAULT_KINDS: tuple[FaultKind, ...] = ("drop", "restart", "freeze", "close4000", "refuse503")
UNKNOWN_EVENT_TYPES = ("x.future.event", "badge.awarded")
CHANNELS = ("personal", "town-square")

# Tiny intervals so every fault is noticed and healed within a fraction of a second; the
# pong timeout stays generous so a busy box never mistakes a healthy link for a dead one.
SETTINGS = ClientSettings(
    ping_interval=0.25,
    pong_timeout=1.5,
    backoff_base=0.05,
    backoff_cap=0.5,
    backoff_jitter=0.5,
    stable_after=0.5,
    poll_interval=0.2,
    close_timeout=0.2,
    connect_timeout=3.0,
    request_timeout=3.0,
)


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after the start of the run
    kind: FaultKind
    hold: float  # how long a freeze or a refusal lasts


def make_schedule(seed: int, duration: float) -> list[Fault]:
    """Faults one after another, every kind at least once (if the run is long enough)."""
    rng = random.Random(seed)
    kinds = list(FAULT_KINDS)
    rng.shuffle(kinds)
    faults: list[Fault] = []
    t = rng.uniform(0.5, 1.0)
    tail = 1.0  # the last fault ends before the producers stop
    while True:
        kind = kinds.pop(0) if kinds else rng.choice(FAULT_KINDS)
        hold = 0.0
        if kind == "freeze":
            # Longer than the pong timeout, so the client has to notice the silence itself.
            hold = rng.uniform(2.0, 3.0)
        elif kind == "refuse503":
            # Long enough for more than 100 notifications to pile up (live offline queue).
            hold = rng.uniform(0.8, 1.6)
        if t + hold > duration - tail:
            break
        faults.append(Fault(round(t, 3), kind, round(hold, 3)))
        t += hold + rng.uniform(0.6, 1.4)
    return faults


def max_attempts(window: float, s: ClientSettings) -> int:
    """Most connect attempts the backoff policy allows in ``window`` seconds (fresh start)."""
    attempts, spent, i = 1, 0.0, 0
    while True:
        delay = (1 - s.backoff_jitter) * min(s.backoff_cap, s.backoff_base * 2.0**i)
        if spent + delay > window:
            return attempts
        spent += delay
        attempts += 1
        i += 1


@dataclass
class FaultRecord:
    fault: Fault
    started: float = 0.0
    ended: float = 0.0


@dataclass
class ChaosReport:
    mode: Mode
    seed: int
    duration: float
    schedule: list[Fault]
    faults: list[FaultRecord] = field(default_factory=list)
    notifications_raised: int = 0
    notifications_delivered: int = 0
    notification_duplicates: int = 0  # reached the consumer more than once
    notifications_lost: int = 0
    losses_unexplained: list[str] = field(default_factory=list)
    losses_by_cause: Counter[str] = field(default_factory=Counter)
    unacked_at_end: int = 0
    foreign_items: list[str] = field(default_factory=list)  # ids the server never raised
    chat_posted: int = 0
    chat_delivered: int = 0
    chat_duplicates: int = 0
    chat_lost: list[str] = field(default_factory=list)
    # Chat lines that mention the consumer: each must reach it as a mention, the server's
    # push or the one the client recovers from the chat line (the live server pushes at
    # most once, so only the recovery makes this hold there).
    chat_mentions_posted: int = 0
    chat_mentions_lost: list[str] = field(default_factory=list)
    mentions_recovered: int = 0
    # Live: inbox and guestbook items the consumer acked that the server's REST list still
    # shows unread (the live WebSocket ack marks nothing; the client's REST read must).
    acked_but_unread: int = 0
    handshakes: int = 0
    handshake_bound: int = 0
    connects: dict[str, int] = field(default_factory=dict)
    connect_bound: int = 0
    max_retry_attempt: int = 0
    max_pending: int = 0
    max_pending_acks: int = 0
    rss_growth_mb: float = 0.0
    client_duplicates_dropped: int = 0
    client_offline_queue_full: int = 0
    client_invalid_frames: int = 0
    client_overflow_dropped: int = 0
    # Offline-queue overflows whose whole flush the client read (so it must have reported),
    # and connections that got a full queue as their back-log (the most it may report).
    queue_overflows_seen: int = 0
    full_queues_sent: int = 0
    # Links the client had (one reached the consumer) that died holding lost notifications,
    # against the client's count of links that ended without a close frame.
    lossy_links: int = 0
    client_links_lost: int = 0
    # Faults that end a link without a close frame (each ends at most one personal link).
    links_cut: int = 0
    # What the client's status says it took in minus what is still unread or was dropped,
    # against what the consumer actually read: the status counters must tell the truth.
    client_accounted: int = 0
    consumer_read: int = 0
    settled: bool = False

    def problems(self) -> list[str]:
        """Every way the books don't balance (empty: all good)."""
        out: list[str] = []
        if not self.settled:
            out.append("the consumer never caught up with the server after the faults")
        if self.notification_duplicates:
            out.append(f"{self.notification_duplicates} notifications reached the consumer twice")
        if self.chat_duplicates:
            out.append(f"{self.chat_duplicates} chat messages reached the consumer twice")
        if self.foreign_items:
            out.append(f"items the server never raised: {self.foreign_items[:5]}")
        if self.chat_lost:
            out.append(f"{len(self.chat_lost)} chat messages lost, e.g. {self.chat_lost[:3]}")
        if self.chat_mentions_lost:
            out.append(
                f"{len(self.chat_mentions_lost)} chat mentions never reached the consumer, "
                f"e.g. {self.chat_mentions_lost[:3]}"
            )
        if self.acked_but_unread:
            out.append(f"{self.acked_but_unread} acked items still unread on the server")
        if self.mode == "documented":
            if self.notifications_lost:
                out.append(f"{self.notifications_lost} notifications lost (documented mode)")
            if self.unacked_at_end:
                out.append(f"{self.unacked_at_end} notifications still unacked on the server")
        else:
            if self.losses_unexplained:
                out.append(
                    f"{len(self.losses_unexplained)} losses the live semantics don't explain, "
                    f"e.g. {self.losses_unexplained[:3]}"
                )
            if self.client_offline_queue_full < self.queue_overflows_seen:
                out.append(
                    f"the server's offline queue overflowed {self.queue_overflows_seen} times "
                    f"before a flush the client read, but the client reported "
                    f"{self.client_offline_queue_full}"
                )
            if self.client_links_lost < self.lossy_links:
                out.append(
                    f"{self.lossy_links} links died holding notifications, but the client "
                    f"counted {self.client_links_lost} lost links"
                )
        # The other side of both counters: no more reports than there can have been.
        if self.client_offline_queue_full > self.full_queues_sent:
            out.append(
                f"the client reported {self.client_offline_queue_full} full offline queues, "
                f"but only {self.full_queues_sent} connections got {LIVE_QUEUE_LIMIT} queued "
                "notifications"
            )
        if self.client_links_lost > self.links_cut:
            out.append(
                f"the client counted {self.client_links_lost} links lost without a close frame, "
                f"but only {self.links_cut} faults cut a link"
            )
        if self.client_overflow_dropped:
            out.append(f"{self.client_overflow_dropped} items dropped for buffer overflow")
        if self.client_accounted != self.consumer_read:
            out.append(
                f"the client's counters account for {self.client_accounted} notifications, "
                f"the consumer read {self.consumer_read}"
            )
        if self.handshakes > self.handshake_bound:
            out.append(f"{self.handshakes} handshakes, more than the bound {self.handshake_bound}")
        for name, n in self.connects.items():
            if n > self.connect_bound:
                out.append(f"{name}: {n} connects, more than the bound {self.connect_bound}")
        if self.max_pending > BUFFER_SIZE:
            out.append(f"{self.max_pending} unread items, over the buffer bound {BUFFER_SIZE}")
        if self.rss_growth_mb > RSS_GROWTH_LIMIT_MB:
            out.append(f"memory grew {self.rss_growth_mb:.0f} MB (limit {RSS_GROWTH_LIMIT_MB:g})")
        if self.client_invalid_frames:
            out.append(f"{self.client_invalid_frames} frames from our own server were invalid")
        return out

    def summary(self) -> str:
        kinds = Counter(r.fault.kind for r in self.faults)
        return "\n".join(
            [
                f"mode={self.mode} seed={self.seed} duration={self.duration:g}s",
                f"faults injected: {len(self.faults)} ({dict(sorted(kinds.items()))})",
                f"notifications: raised {self.notifications_raised}, delivered "
                f"{self.notifications_delivered}, duplicates {self.notification_duplicates}, "
                f"lost {self.notifications_lost} {dict(self.losses_by_cause)}, "
                f"unacked at end {self.unacked_at_end}",
                f"chat: posted {self.chat_posted}, delivered {self.chat_delivered}, "
                f"duplicates {self.chat_duplicates}, lost {len(self.chat_lost)}",
                f"chat mentions: posted {self.chat_mentions_posted}, lost "
                f"{len(self.chat_mentions_lost)}, recovered from chat {self.mentions_recovered}; "
                f"acked but still unread on the server {self.acked_but_unread}",
                f"handshakes {self.handshakes} (bound {self.handshake_bound}); connects "
                f"{self.connects} (bound {self.connect_bound}); max retry attempt "
                f"{self.max_retry_attempt}",
                f"client: redeliveries deduplicated {self.client_duplicates_dropped}, "
                f"offline-queue-full reports {self.client_offline_queue_full} (overflows "
                f"seen {self.queue_overflows_seen}, full queues sent {self.full_queues_sent}), "
                f"links lost {self.client_links_lost} (lossy {self.lossy_links}, cut "
                f"{self.links_cut}); max unread "
                f"{self.max_pending}, max queued acks {self.max_pending_acks}, RSS growth "
                f"{self.rss_growth_mb:.1f} MB",
            ]
        )


def describe_schedule(seed: int, schedule: list[Fault]) -> str:
    steps = ", ".join(f"{f.at:g}s {f.kind}" + (f" {f.hold:g}s" if f.hold else "") for f in schedule)
    return f"chaos seed {seed}: {steps}"


class _Stopper:
    def __init__(self) -> None:
        self.event = threading.Event()

    def every(self, interval: float, step: Callable[[int], None]) -> None:
        """Call ``step(i)`` at a steady rate until stopped (catching up after stalls)."""
        start, i = time.monotonic(), 0
        while not self.event.is_set():
            step(i)
            i += 1
            delay = start + i * interval - time.monotonic()
            if delay > 0:
                self.event.wait(delay)


BUFFER_SIZE = 5000
# Growth of the whole process (server, client, producers) a session may cause. Generous: it
# catches what grows with the traffic (a leak of every frame would pass it within minutes),
# not allocator noise.
RSS_GROWTH_LIMIT_MB = 200.0


def run_chaos(
    mode: Mode,
    seed: int,
    duration: float,
    *,
    notify_rate: float = 150.0,
    chat_rate: float = 8.0,
    settle_timeout: float = 30.0,
    min_notifications: int = 0,
    min_chat: int = 0,
    log: Callable[[str], None] = print,
) -> ChaosReport:
    """Run one seeded chaos session and return its books (checked by the caller).

    The producers run for ``duration`` and then, on a machine too busy to keep their rates,
    on until the server holds ``min_notifications`` and ``min_chat`` (bounded by
    ``settle_timeout``): the books are checked on that much traffic however slow the box.
    """
    schedule = make_schedule(seed, duration)
    log(describe_schedule(seed, schedule))
    report = ChaosReport(mode=mode, seed=seed, duration=duration, schedule=schedule)
    rng = random.Random(seed + 1)
    # Live mode raises what the live server sends; its mentions come from the chat producer.
    names = LIVE_EVENT_TYPES if mode == "live" else DOCUMENTED_EVENT_TYPES
    event_types = [*(e for e in names if not e.startswith("mention.")), *UNKNOWN_EVENT_TYPES]
    proc = psutil.Process()

    with LocalServer(
        mode=mode,
        agents=("alice", "bob"),
        idle_timeout=300.0,
        idle_check_interval=0.5,
        chat_rate_limit=(1_000_000, 1.0),
        close_hold=float(os.environ.get("CHAOS_CLOSE_HOLD", "10")) if mode == "live" else 0.0,
    ) as srv:
        alice, bob = srv.agents["alice"], srv.agents["bob"]
        seen_notes: Counter[str] = Counter()
        seen_chat: Counter[str] = Counter()
        stop_producers = _Stopper()
        stop_consumer = threading.Event()
        errors: list[str] = []

        def notify(i: int) -> None:
            kind = event_types[rng.randrange(len(event_types))]
            if mode == "live":
                data = live_payload(kind, i, seed, bob.id)
            else:
                data = {"seq": i, "preview": f"notification {i}"}
                if kind == "inbox.message":
                    data["message_id"] = f"m{seed}x{i}"
                elif kind == "guestbook.entry":
                    data["entry_id"] = f"e{seed}x{i}"
            srv.notify("alice", kind, data)

        http = httpx.Client(
            base_url=srv.base_url,
            headers={"Authorization": f"Bearer {bob.api_key}"},
            timeout=2.0,
        )

        def chat(i: int) -> None:
            try:
                mention = " @alice" if i % MENTION_EVERY == 0 else ""
                http.post("/api/chat", json={"message": f"chat {i} from bob{mention}"})
            except httpx.HTTPError:
                pass  # server down: the server's chat log, not this loop, is the truth

        client = MoltCitiesClient(
            api_key=alice.api_key,
            base_url=srv.base_url,
            buffer_size=BUFFER_SIZE,
            settings=SETTINGS,
        )

        def consume() -> None:
            while not stop_consumer.is_set():
                try:
                    notes = client.read_notifications().items
                    for n in notes:
                        seen_notes[n.id] += 1
                    if notes:
                        client.ack([n.id for n in notes])
                    for item in client.read_town_square(kinds=["chat"]).items:
                        if isinstance(item, ChatFrame) and item.id:
                            seen_chat[item.id] += 1
                    st = client.status()
                    for ch in st.channels.values():
                        report.max_pending = max(report.max_pending, ch.pending)
                        report.max_pending_acks = max(report.max_pending_acks, ch.pending_acks)
                        report.max_retry_attempt = max(report.max_retry_attempt, ch.retry_attempt)
                except Exception as exc:  # the books will show it; keep consuming
                    errors.append(f"{type(exc).__name__}: {exc}")
                stop_consumer.wait(0.01)

        def apply(record: FaultRecord) -> None:
            f = record.fault
            record.started = time.monotonic()
            if f.kind == "drop":
                srv.drop_all()
            elif f.kind == "restart":
                srv.restart()
            elif f.kind == "close4000":
                srv.disconnect_all(4000)
            elif f.kind == "freeze":
                srv.freeze()
                time.sleep(f.hold)
                srv.thaw()
            elif f.kind == "refuse503":
                srv.refuse_handshakes(503)
                srv.drop_all()
                time.sleep(f.hold)
                srv.refuse_handshakes(None)
            record.ended = time.monotonic()

        threads: list[threading.Thread] = []
        client.start()
        try:
            if not client.wait_connected(timeout=20):
                raise AssertionError(f"never connected: {client.status()}")
            rss_start = proc.memory_info().rss
            t0 = time.monotonic()
            threads = [
                threading.Thread(target=consume, name="chaos-consumer", daemon=True),
                threading.Thread(
                    target=stop_producers.every, args=(1 / notify_rate, notify), daemon=True
                ),
                threading.Thread(
                    target=stop_producers.every, args=(1 / chat_rate, chat), daemon=True
                ),
            ]
            for t in threads:
                t.start()
            for fault in schedule:
                delay = t0 + fault.at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                # Each fault hits a connected client: on a busy machine the last reconnect may
                # still be under way, and a fault on a link already down tests nothing.
                client.wait_connected(timeout=settle_timeout)
                record = FaultRecord(fault)
                apply(record)
                report.faults.append(record)
            remaining = t0 + duration - time.monotonic()
            if remaining > 0:
                time.sleep(remaining)

            def traffic_done() -> bool:
                return srv._call(
                    lambda: (
                        len(srv.state.notifications[alice.id]) >= min_notifications
                        and len(srv.state.chat) >= min_chat
                    )
                )

            deadline = time.monotonic() + settle_timeout
            while not traffic_done() and time.monotonic() < deadline:
                time.sleep(0.05)
            stop_producers.event.set()
            for t in threads[1:]:
                t.join(timeout=30)
            # One last reconnect: in documented mode the server pushes unsubscribed (unknown)
            # types only as the back-log of a new connection.
            flush = FaultRecord(Fault(round(time.monotonic() - t0, 3), "drop", 0.0))
            apply(flush)
            report.faults.append(flush)

            raised = list(srv._call(lambda: list(srv.state.notifications[alice.id])))
            by_key: dict[str, int] = {}
            for index, n in enumerate(raised):
                by_key[n.id] = index
                if n.event.rest_id:
                    by_key[n.event.rest_id] = index

            def reached(n: Any) -> bool:
                """The consumer got it, or (a chat mention) its twin recovered from chat."""
                if n.id in seen_notes:
                    return True
                twin = n.event.data.get("message_id")
                return n.event.event_type.startswith("mention") and f"chat:{twin}" in seen_notes

            def caught_up() -> bool:
                if not client.status().connected:
                    return False
                chat_ids = srv._call(lambda: [m.id for m in srv.state.chat])
                if any(cid not in seen_chat for cid in chat_ids):
                    return False
                if mode == "documented":
                    unacked = srv._call(
                        lambda: sum(1 for n in srv.state.notifications[alice.id] if not n.acked)
                    )
                    return unacked == 0 and all(reached(n) for n in raised)
                if _acked_but_unread(srv, alice.id, seen_notes):
                    return False
                # Live: what was written to a connection still open must have landed (however
                # slowly a busy machine delivers it); the rest was lost for good or never sent.
                open_links = srv._call(lambda: set(srv.state.sessions))
                return all(
                    reached(n) or n.event.rest_id in seen_notes
                    for n in raised
                    if open_links.intersection(n.sent_to)
                )

            deadline = time.monotonic() + settle_timeout
            while not (settled := caught_up()) and time.monotonic() < deadline:
                time.sleep(0.05)
            report.settled = settled
            report.rss_growth_mb = (proc.memory_info().rss - rss_start) / 2**20
        finally:
            stop_producers.event.set()
            stop_consumer.set()
            if threads:
                threads[0].join(timeout=30)  # its last read counts in the books below
            client.close()
            http.close()

        status = client.status()
        personal = status.channels["personal"]
        report.mentions_recovered = status.mentions_recovered
        if mode == "live":
            report.acked_but_unread = _acked_but_unread(srv, alice.id, seen_notes)
        report.client_duplicates_dropped = personal.duplicates_dropped
        report.client_offline_queue_full = personal.offline_queue_full
        report.client_links_lost = personal.links_lost
        report.client_invalid_frames = sum(c.invalid_frames for c in status.channels.values())
        report.client_overflow_dropped = sum(c.overflow_dropped for c in status.channels.values())
        report.client_accounted = personal.received - personal.overflow_dropped - personal.pending
        report.consumer_read = sum(seen_notes.values())
        report.connects = {name: c.connect_count for name, c in status.channels.items()}
        if errors:
            log(f"consumer errors ({len(errors)}): {errors[:3]}")

        _balance(report, srv, alice.id, seen_notes, seen_chat, by_key, raised)
        if mode == "live":  # a documented server keeps everything: its queue is never full
            report.full_queues_sent = _full_queues_sent(raised)
        report.links_cut = sum(1 for r in report.faults if r.fault.kind != "close4000")
    return report


def _balance(
    report: ChaosReport,
    srv: LocalServer,
    agent_id: str,
    seen_notes: Counter[str],
    seen_chat: Counter[str],
    by_key: dict[str, int],
    raised: list[Any],
) -> None:
    state = srv.state
    report.notifications_raised = len(raised)
    # A mention recovered from chat ("chat:<message id>") stands for the server's mention of
    # that chat message, which the client then drops as a duplicate (or never got).
    recovered = {i.removeprefix("chat:") for i in seen_notes if i.startswith("chat:")}
    seen_notes = Counter({i: t for i, t in seen_notes.items() if not i.startswith("chat:")})
    # What came over a link (a recovered twin came from the chat, not the personal link).
    seen_on_links = set(seen_notes)
    for n in raised:
        if n.event.data.get("message_id") in recovered and n.event.event_type.startswith("mention"):
            seen_notes[n.id] += 1
    mentioned = {
        n.event.data.get("message_id")
        for n in raised
        if n.event.event_type.startswith("mention") and n.id in seen_notes
    }
    report.unacked_at_end = sum(1 for n in state.notifications[agent_id] if not n.acked)
    per_notification: Counter[int] = Counter()
    for item_id, times in seen_notes.items():
        index = by_key.get(item_id)
        if index is None:
            report.foreign_items.append(item_id)
        else:
            per_notification[index] += times
    report.notifications_delivered = len(per_notification)
    report.notification_duplicates = sum(1 for t in per_notification.values() if t > 1)
    # Highest notification (in raising order) that reached the consumer over each link. The
    # server writes to a link in raising order and TCP keeps it, so a notification written to
    # a link before one the consumer got over that same link reached the client: losing it
    # is the client's fault, whatever became of the link afterwards.
    via_link: dict[str, int] = {}
    for index, n in enumerate(raised):
        if n.id in seen_on_links:  # the socket frame's id (a fallback poll yields the REST id)
            for conn in n.sent_to:
                via_link[conn] = max(via_link.get(conn, -1), index)
    lossy: set[str] = set()
    for index, n in enumerate(raised):
        if index in per_notification:
            continue
        report.notifications_lost += 1
        ends = [state.session_ends.get(conn) for conn in n.sent_to]
        if n.queue_dropped:
            report.losses_by_cause["offline queue over 100"] += 1
        elif (
            n.sent_to
            and all(end in ("gone", "displaced") for end in ends)
            and all(via_link.get(conn, -1) < index for conn in n.sent_to)
        ):
            # At-most-once: written to a link that then died (live pushes are not stored).
            report.losses_by_cause["written to a link that died"] += 1
            lossy.update(conn for conn in n.sent_to if conn in via_link)
        else:
            report.losses_by_cause["unexplained"] += 1
            report.losses_unexplained.append(f"{n.id} ({n.event.event_type}, sent to {ends})")

    report.queue_overflows_seen = _overflows_seen(raised, via_link)
    report.lossy_links = len(lossy)

    chat_ids = [m.id for m in state.chat]
    report.chat_posted = len(chat_ids)
    known_chat = set(chat_ids)
    report.chat_delivered = sum(1 for cid in chat_ids if cid in seen_chat)
    report.chat_duplicates = sum(1 for t in seen_chat.values() if t > 1)
    report.chat_lost = [cid for cid in chat_ids if cid not in seen_chat]
    report.foreign_items += [cid for cid in seen_chat if cid not in known_chat]
    mentioning = [m.id for m in state.chat if "@alice" in m.message]
    report.chat_mentions_posted = len(mentioning)
    report.chat_mentions_lost = [
        cid for cid in mentioning if cid not in mentioned and cid not in recovered
    ]
    report.foreign_items += [f"chat:{cid}" for cid in recovered if cid not in known_chat]

    # Storm check: every handshake must fit in what the backoff policy allows around each
    # fault (a fresh backoff is the worst case: attempts only slow down as they fail).
    s = SETTINGS
    # Attempts happen only while a channel is down: during the fault, then one delay more.
    slack = s.backoff_cap
    per_channel = 1 + sum(max_attempts(r.ended - r.started + slack, s) + 1 for r in report.faults)
    report.handshakes = state.ws_handshakes
    report.handshake_bound = per_channel * len(CHANNELS)
    report.connect_bound = 2 + 2 * len(report.faults)


MENTION_EVERY = 3  # every third chat line mentions the consumer


def live_payload(kind: str, i: int, seed: int, sender_id: str) -> dict[str, Any]:
    """A payload of the shape the live server sends for ``kind`` (live-server-notes.md)."""
    job = {"job_id": f"job{seed}x{i}", "job_title": f"job {i}"}
    shapes: dict[str, dict[str, Any]] = {
        "inbox.message": {
            "message_id": f"msg_{seed}x{i}",
            "from": {"agent_id": sender_id, "handle": "bob", "display_name": "Bob", "avatar": None},
            "subject": f"subject {i}",
            "preview": f"notification {i}",
        },
        "guestbook.entry": {
            "entry_id": f"e{seed}x{i}",
            "site_slug": "alice",
            "author": "Bob",
            "author_agent_id": sender_id,
            "message": f"notification {i}",
        },
        "site.followed": {
            "site_id": "site_alice",
            "site_slug": "alice",
            "follower_id": sender_id,
            "follower_name": "Bob",
        },
        "job.worker_interested": {
            **job,
            "worker_id": sender_id,
            "worker_name": "Bob",
            "active_workers": 1,
        },
        "job.submitted": {
            **job,
            "worker_id": sender_id,
            "worker_name": "Bob",
            "review_deadline": "2026-12-01T00:00:00Z",
            "model": "race-to-complete",
        },
        "job.approved": {
            **job,
            "poster_id": sender_id,
            "poster_name": "Bob",
            "reward_lamports": 1000,
        },
        "job.paid": {
            **job,
            "reward_lamports": 1000,
            "worker_payment_lamports": 990,
            "signature": "sig",
        },
    }
    return shapes.get(kind, {"seq": i, "preview": f"notification {i}"})


def _acked_but_unread(srv: LocalServer, agent_id: str, seen: Counter[str]) -> int:
    """Live: inbox/guestbook items the consumer got (and so acked) that REST lists unread."""
    if srv.mode != "live":
        return 0

    def count() -> int:
        reads = srv.state.reads.get(agent_id, set())
        unread = 0
        for n in srv.state.notifications[agent_id]:
            rest_type, rest_id = n.event.rest_type, n.event.rest_id
            if rest_type not in ("message", "guestbook") or rest_id is None:
                continue
            if n.id not in seen and rest_id not in seen:
                continue  # never reached the consumer (a loss the books explain elsewhere)
            read = n.read if rest_type == "message" else rest_id in reads
            unread += not read
        return unread

    return int(srv._call(count))


def _overflows_seen(raised: list[Any], via_link: dict[str, int]) -> int:
    """Live offline-queue overflows whose flush the client read to its last queued frame.

    The notifications an overflow dropped are the oldest of one offline spell, a run in raising
    order; the full queue of the next ``LIVE_QUEUE_LIMIT`` went to one link on connect. If the
    consumer got that flush's last frame (or a later one) over the link, the client saw the
    whole full queue and had to report it.
    """
    seen, i = 0, 0
    while i < len(raised):
        if not raised[i].queue_dropped:
            i += 1
            continue
        while i < len(raised) and raised[i].queue_dropped:
            i += 1
        rest = [j for j in range(i, len(raised)) if raised[j].sent_to]
        if not rest:
            continue
        link = raised[rest[0]].sent_to[0]
        flush = [j for j in rest if raised[j].sent_to == [link]][:LIVE_QUEUE_LIMIT]
        if len(flush) == LIVE_QUEUE_LIMIT and via_link.get(link, -1) >= flush[-1]:
            seen += 1
    return seen


def _full_queues_sent(raised: list[Any]) -> int:
    """Connections whose back-log (the live offline queue, flushed on connect) was full."""
    per_link: Counter[str] = Counter(n.sent_to[0] for n in raised if n.flushed)
    return sum(1 for count in per_link.values() if count >= LIVE_QUEUE_LIMIT)


LOSS_NOTE = (
    "Losses are allowed only in live mode, and only of two kinds: 'offline queue over 100' "
    "(the live server keeps the newest 100 for an offline agent; every overflow whose flush "
    "the client read must show in its `offline_queue_full` counter) and 'written to a link "
    "that died' (the live server pushes at most once, with no ack: what it wrote into a "
    "frozen or dropped link is gone; a loss counts so only if nothing written later on that "
    "same link reached the consumer, since TCP keeps order). Documented mode allows none."
)


def main() -> int:
    seconds = float(os.environ.get("SOAK_SECONDS", "180"))
    seed = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(1_000_000))
    modes: list[Mode] = ["documented", "live"]
    failed = False
    sections: list[ChaosReport] = []
    for i, mode in enumerate(modes):
        report = run_chaos(mode, seed + i, seconds / len(modes), settle_timeout=60.0)
        print(report.summary(), flush=True)
        for problem in report.problems():
            print(f"PROBLEM: {problem}", flush=True)
            failed = True
        sections.append(report)
    out = Path(__file__).with_name("SOAK.md")
    command = f"SOAK_SECONDS={seconds:g} CHAOS_SEED={seed} make soak"
    out.write_text(
        "# Soak run\n\n"
        f"`{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        "half the time in each server mode. Replay with the same seed.\n\n"
        + LOSS_NOTE
        + "\n\n"
        + "\n\n".join(
            "```\n"
            + r.summary()
            + "\n"
            + describe_schedule(r.seed, r.schedule)
            + "\n```\nBooks balanced: "
            + ("yes" if not r.problems() else "NO: " + "; ".join(r.problems()))
            for r in sections
        )
        + "\n"
    )
    print(f"figures written to {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
