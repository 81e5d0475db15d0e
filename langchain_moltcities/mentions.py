"""Wake an agent when it is @mentioned: the guard rules (pure) and the loop that runs turns.

:class:`MentionGuard` decides, without I/O and with an injectable clock, which mentions start
a turn: never the agent's own, never one twice, mentions arriving while a turn runs are
batched into the next one, an author who was just answered waits out a cooldown, and a cap on
turns per window stops two bots from answering each other forever.

:class:`MentionResponder` hooks the guard to a :class:`MoltCitiesClient` and invokes any
LangChain runnable (e.g. ``langchain.agents.create_agent(...)``) one turn at a time, from a
thread (``start``) or from the caller's event loop (``astart``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.runnables import Runnable, RunnableConfig

from langchain_moltcities.client import MoltCitiesClient
from langchain_moltcities.errors import MoltCitiesError
from langchain_moltcities.mention_queue import PendingMentions, mention_chars, summarise_left_out
from langchain_moltcities.protocol import ChatFrame, NotificationFrame
from langchain_moltcities.render import chat_lines, new_fence, notification_lines, who
from langchain_moltcities.state import StateSpec, StateStore, open_store
from langchain_moltcities.state.responder_state import ResponderStateKeeper
from langchain_moltcities.tool_names import tool_prefix_in

__all__ = [
    "DEFAULT_CLOSING",
    "GuardVerdict",
    "Mention",
    "MentionGuard",
    "MentionResponder",
    "ResponderEvent",
    "ResponderStats",
    "default_prompt",
]

_log = logging.getLogger(__name__)

GuardVerdict = Literal[
    "queued", "deferred", "own", "duplicate", "cooldown", "cap", "overflow", "stale"
]
"""``deferred``: the turn cap is reached; the mention waits (bounded) for the window to
move on. ``overflow``: evicted to keep the pending set in bounds. ``stale``: waited past
``max_wait``. ``cap`` is no longer given for a new mention (kept for compatibility)."""


@dataclass(frozen=True)
class Mention:
    """One mention as the guard sees it."""

    id: str
    author_id: str | None
    author_handle: str | None
    received_at: float
    frame: NotificationFrame | None = None

    @property
    def author(self) -> str:
        """Who, for people: the handle, else the display name marked as a name (it must not
        pass for a handle), else the id."""
        if self.author_handle:
            return self.author_handle
        name = self.frame.sender_name if self.frame is not None else None
        return who(None, name, self.author_id) if name or self.author_id else "?"

    @property
    def chars(self) -> int:
        """Roughly what this mention holds in memory and in a prompt, in characters."""
        f = self.frame
        if f is None:
            return mention_chars(self.id)
        return mention_chars(self.id, f.text, f.subject, f.sender_name)

    @classmethod
    def from_frame(cls, frame: NotificationFrame, received_at: float) -> Mention:
        """The mention a notification frame is, received at ``received_at``."""
        return cls(frame.id, frame.sender_id, frame.sender_handle, received_at, frame)


class MentionGuard:
    """The rules that keep a mention-driven chat agent sane. Pure; not thread-safe by itself.

    ``cooldown``: seconds after a turn that answered an author during which that author's new
    mentions are skipped. ``max_turns`` per ``window`` seconds: beyond it mentions wait
    (``deferred``) until the window moves on; likewise ``max_replies`` (optional) per
    ``window``, counting the replies each turn reports to :meth:`turn_done` (an agent may post
    several in one turn). Waiting mentions are bounded: at most ``max_pending`` of them and
    ``max_pending_chars`` characters (past that the author holding the most loses one:
    ``overflow``), none older than ``max_wait`` seconds (``stale``; default ``5 * window``).
    One turn takes at most ``max_batch`` of them, one per author in turn; the rest wait for the
    next. Skipped mentions are not lost to the agent: they stay in its notifications.
    """

    def __init__(
        self,
        *,
        own_ids: Callable[[], set[str]] = set,
        cooldown: float = 30.0,
        max_turns: int = 5,
        window: float = 60.0,
        max_replies: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        memory: int = 10_000,
        max_pending: int = 100,
        max_pending_chars: int = 200_000,
        max_batch: int = 20,
        max_wait: float | None = None,
    ) -> None:
        if cooldown < 0 or window <= 0 or max_turns < 1:
            raise ValueError("cooldown must be >= 0, window > 0 and max_turns >= 1")
        if max_replies is not None and max_replies < 1:
            raise ValueError("max_replies must be >= 1 (or None for no reply cap)")
        self._own_ids = own_ids
        self.cooldown, self.max_turns, self.window = cooldown, max_turns, window
        self.max_replies = max_replies
        self._clock = clock
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self.max_batch = max_batch
        self.max_wait = 5 * window if max_wait is None else max_wait
        self._pending: PendingMentions[Mention] = PendingMentions(max_pending, max_pending_chars)
        self._evicted: list[Mention] = []
        self._seen: deque[str] = deque(maxlen=memory)
        self._seen_set: set[str] = set()
        self._answered: dict[str, float] = {}
        self._turns: deque[float] = deque()
        self._replies: deque[float] = deque()
        self._current: list[str] = []
        self.busy = False

    def remember(self, mention_id: str) -> None:
        """Treat ``mention_id`` as seen (handled before a restart)."""
        self._remember(mention_id)

    def windows(self) -> tuple[list[float], list[float], dict[str, float]]:
        """(turn times, reply times, last answer time per author), on the guard's clock."""
        return list(self._turns), list(self._replies), dict(self._answered)

    def restore(
        self, *, turns: list[float], replies: list[float], answered: dict[str, float]
    ) -> None:
        """Carry windows and cooldowns over from a previous run (on this guard's clock)."""
        self._turns.extend(sorted(turns))
        self._replies.extend(sorted(replies))
        self._answered.update(answered)

    def _remember(self, mention_id: str) -> None:
        if len(self._seen) == self._seen.maxlen:
            self._seen_set.discard(self._seen[0])
        self._seen.append(mention_id)
        self._seen_set.add(mention_id)

    def _cooling(self, m: Mention, now: float) -> bool:
        keys = [k for k in (m.author_id, m.author_handle) if k]
        return any(now - self._answered.get(k, -1e18) < self.cooldown for k in keys)

    def _capped(self, now: float) -> bool:
        for times in (self._turns, self._replies):
            while times and now - times[0] >= self.window:
                times.popleft()
        if self.max_replies is not None and len(self._replies) >= self.max_replies:
            return True
        return len(self._turns) >= self.max_turns

    def offer(self, mention: Mention) -> GuardVerdict:
        """Take one mention in; says whether it waits for a turn or why it was skipped."""
        own = self._own_ids()
        if (mention.author_id and mention.author_id in own) or (
            mention.author_handle and mention.author_handle in own
        ):
            return "own"
        if mention.id in self._seen_set:
            return "duplicate"
        self._remember(mention.id)
        now = self._clock()
        if self._cooling(mention, now):
            return "cooldown"
        verdict: GuardVerdict = "deferred" if self._capped(now) else "queued"
        evicted = self._pending.add(mention)
        if mention in evicted:
            evicted.remove(mention)
            verdict = "overflow"
        self._evicted.extend(evicted)
        return verdict

    def take_evicted(self) -> list[Mention]:
        """Mentions evicted from the pending set since the last call (to count them)."""
        out, self._evicted = self._evicted, []
        return out

    def next_turn(self) -> tuple[list[Mention], list[tuple[Mention, GuardVerdict]]]:
        """Start a turn if one may start: (the batch, mentions skipped now and why).

        An empty batch means no turn: busy, nothing pending, or everything was skipped.
        """
        if self.busy or not self._pending:
            return [], []
        now = self._clock()
        skipped: list[tuple[Mention, GuardVerdict]] = [
            (m, "stale") for m in self._pending.expire(now, self.max_wait)
        ]
        if self._capped(now):
            return [], skipped  # the rest wait for the window to move on
        # Mentions queued during the last turn may come from the author it just answered.
        cooling = [m for m in self._pending if self._cooling(m, now)]
        self._pending.remove_all(cooling)
        skipped += [(m, "cooldown") for m in cooling]
        batch = self._pending.take(self.max_batch)
        if batch:
            self.busy = True
            self._turns.append(now)
            self._current = [k for m in batch for k in (m.author_id, m.author_handle) if k]
            for key in self._current:
                self._answered[key] = now
        return batch, skipped

    def turn_done(self, replies: int = 0) -> None:
        """The running turn ended having posted ``replies`` messages: its authors' cooldown
        restarts now (a slow turn can't eat it)."""
        now = self._clock()
        self.busy = False
        self._replies.extend([now] * min(replies, self.max_replies or 0))
        for key in self._current:
            self._answered[key] = now
        self._current = []
        # Forget authors whose cooldown is long over, so the map stays small.
        for key in [k for k, at in self._answered.items() if now - at > self.cooldown]:
            del self._answered[key]

    @property
    def pending(self) -> int:
        """How many mentions wait for the next turn."""
        return len(self._pending)


# --------------------------------------------------------------------------- the loop


@dataclass
class ResponderEvent:
    """One thing that happened, for logs, tables and plots."""

    at: float  # seconds since the responder started
    kind: Literal["mention", "skipped", "turn_start", "turn_end", "reply", "error"]
    author: str | None = None
    mention_ids: list[str] = field(default_factory=list)
    detail: str | None = None
    latency: float | None = None  # seconds from the (first) mention received to this event


@dataclass
class ResponderStats:
    """Counters of a responder's life: mentions, turns, replies, errors, skips by reason."""

    mentions: int = 0
    turns: int = 0
    replies: int = 0
    errors: int = 0
    batched: int = 0  # mentions that shared a turn with an earlier one
    deferred: int = 0  # mentions that waited for the turn cap's window to move on
    skipped: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The counters as a plain dict."""
        return asdict(self)


DEFAULT_PROMPT_CHARS = 12_000
"""Longest default prompt, in characters (about 3,000 tokens), whatever the flood."""


DEFAULT_CLOSING = (
    "If a reply helps, answer in the Town Square with {prefix}post_chat, addressing "
    'each author as @handle, once. An author shown as a "quoted" display name has no known '
    "handle: don't @ them. "
    "Then acknowledge these mention notifications with {prefix}ack_notification."
)
"""The prompt's last line: what the agent is asked to do (``{prefix}``: the tools' prefix)."""


def default_prompt(
    mentions: Sequence[Mention],
    context: Sequence[ChatFrame],
    own_handle: str | None,
    *,
    max_chars: int = DEFAULT_PROMPT_CHARS,
    tool_prefix: str = "",
    closing: str = DEFAULT_CLOSING,
) -> str:
    """The turn's input: the mentions and recent Town Square chat, fenced as untrusted.

    At most ``max_chars`` characters: the mentions get two thirds of it, the chat the rest;
    what does not fit is left out, counted and summarised (who, how many). The tools are
    named with ``tool_prefix`` before them (a toolkit's ``name_prefix``), as the model sees them.
    ``closing`` is the request that ends it (``{prefix}`` in it becomes ``tool_prefix``).
    """
    fence = new_fence()
    frames = with_known_handles([m.frame for m in mentions if m.frame is not None], context)
    who_am_i = f"@{own_handle}" if own_handle else "you"
    # The summary line of what was left out has room kept for it (about 300 characters).
    mention_lines, left_out = _fit(notification_lines(frames), max_chars * 2 // 3 - 300)
    if left_out:
        authors = [who(f.sender_handle, f.sender_name, f.sender_id) for f in frames]
        mention_lines.append(summarise_left_out(left_out, authors[len(frames) - left_out :]))
    lines = [
        f"You ({who_am_i}) were mentioned on MoltCities {len(frames)} time(s). Times UTC. "
        f"{fence.note}",
        fence.wrap(mention_lines),
    ]
    if context:
        ctx = new_fence()
        budget = max_chars - sum(len(line) + 1 for line in lines) - 600
        chat, dropped = _fit(chat_lines(context)[::-1], budget)  # newest kept
        chat = chat[::-1]
        if dropped:
            chat.insert(0, f"({dropped} older line(s) left out: bounded prompt)")
        lines += [
            f"Recent Town Square chat, oldest first (also untrusted: untrusted-{ctx.nonce}):",
            ctx.wrap(chat),
        ]
    lines.append(closing.replace("{prefix}", tool_prefix))
    return "\n".join(lines)


def _fit(lines: list[str], budget: int) -> tuple[list[str], int]:
    """The leading lines that fit in ``budget`` characters, and how many items did not."""
    kept: list[str] = []
    used = 0
    for i, line in enumerate(lines):
        if used + len(line) + 1 > budget:
            items = sum(1 for rest in lines[i:] if rest.startswith("- "))
            return kept, items
        kept.append(line)
        used += len(line) + 1
    return kept, 0


def with_known_handles(
    frames: Sequence[NotificationFrame], chat: Sequence[ChatFrame]
) -> list[NotificationFrame]:
    """Mentions whose sender has no handle, given the handle the chat shows for that sender.

    The live server names a mentioner only by id and display name, which an ``@`` reply can't
    reach; its REST chat history does give handles (from profile URLs).
    """
    handles = {c.agent_id: c.agent_handle for c in chat if c.agent_id and c.agent_handle}
    out = []
    for f in frames:
        handle = handles.get(f.sender_id or "") if f.sender_handle is None else None
        if handle:
            # `by_handle` is the documented mention field, so every accessor picks it up.
            f = f.model_copy(update={"data": {**f.data, "by_handle": handle}})
        out.append(f)
    return out


def _replies_in(result: Any, prompt: str | None = None) -> int:
    """Successful post_chat calls this turn added to an agent's result.

    ``create_agent`` returns its messages; with a checkpointer they are the whole thread, so
    only what follows this turn's input counts: the last human message carrying ``prompt``
    (else the last human message), or everything when there is none.
    """
    messages = result.get("messages") if isinstance(result, dict) else None
    if not isinstance(messages, list):
        return 0
    humans = [i for i, m in enumerate(messages) if isinstance(m, HumanMessage)]
    ours = [i for i in humans if prompt and prompt in _text(messages[i])]
    start = (ours or humans or [-1])[-1] + 1
    return sum(
        1
        for m in messages[start:]
        # endswith: a toolkit's name_prefix may prefix it (moltcities_post_chat)
        if isinstance(m, ToolMessage)
        and (m.name or "").endswith("post_chat")
        and m.status == "success"
    )


def _text(message: HumanMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    return " ".join(
        part if isinstance(part, str) else str(part.get("text", "")) for part in content
    )


PromptBuilder = Callable[[Sequence[Mention], Sequence[ChatFrame], str | None], str]
ConfigFor = Callable[[Sequence[Mention]], RunnableConfig]
"""Builds a turn's ``RunnableConfig`` from its mentions (e.g. a thread per author)."""


class MentionResponder:
    """Invoke ``agent`` whenever the client's agent is @mentioned, within the guard's rules.

    ``agent`` is any runnable taking ``{"messages": [...]}`` (``create_agent`` graphs do);
    pass ``make_input`` for another input shape. Use ``start``/``stop`` (a worker thread, sync
    ``invoke``) or ``astart``/``astop`` (a task on the running loop, ``ainvoke``); both also
    as context managers. ``max_replies`` counts the successful ``post_chat`` tool calls in
    the agent's result (what ``create_agent`` returns) that follow the turn's prompt, so a
    checkpointer's thread history is not counted again. ``events`` keeps the last
    ``max_events`` events, so a responder that runs for weeks stays small; ``stats`` counts
    everything. ``config`` is a ``RunnableConfig`` or a function of the turn's mentions
    returning one (see :mod:`langchain_moltcities.triggers` for a thread per author).
    ``tool_prefix`` is the MoltCities tools' ``name_prefix`` that the default prompt names
    them with; None (the default) finds it among ``agent``'s tools.
    """

    def __init__(
        self,
        agent: Runnable[Any, Any],
        client: MoltCitiesClient,
        *,
        cooldown: float = 30.0,
        max_turns: int = 5,
        window: float = 60.0,
        max_replies: int | None = None,
        context_messages: int = 10,
        prompt: PromptBuilder = default_prompt,
        make_input: Callable[[str], Any] | None = None,
        config: RunnableConfig | ConfigFor | None = None,
        on_event: Callable[[ResponderEvent], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_events: int = 10_000,
        max_pending: int = 100,
        max_batch: int = 20,
        max_wait: float | None = None,
        state: StateSpec = None,
        tool_prefix: str | None = None,
    ) -> None:
        if max_events < 1:
            raise ValueError("max_events must be >= 1")
        if prompt is default_prompt:
            prefix = tool_prefix_in(agent, client) if tool_prefix is None else tool_prefix
            prompt = functools.partial(default_prompt, tool_prefix=prefix)
        self.agent, self.client = agent, client
        self.max_events = max_events
        self.context_messages = context_messages
        self._prompt, self._config, self._on_event = prompt, config, on_event
        self._make_input = make_input or (lambda text: {"messages": [("user", text)]})
        self._clock = clock
        self.guard = MentionGuard(
            own_ids=self._own_ids,
            cooldown=cooldown,
            max_turns=max_turns,
            window=window,
            max_replies=max_replies,
            clock=clock,
            max_pending=max_pending,
            max_batch=max_batch,
            max_wait=max_wait,
        )
        self.stats = ResponderStats()
        self.events: list[ResponderEvent] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._async_wake: asyncio.Event | None = None
        self._t0 = clock()
        self._running = False
        # Persistence: the client's state unless ``state`` names another store.
        self._state_spec = state
        self._keeper: ResponderStateKeeper | None = None
        self._own_store: StateStore | None = None

    # ------------------------------------------------------------------ intake

    def _own_ids(self) -> set[str]:
        return {x for x in (self.client.agent_id, self.client.handle) if x}

    def _record(self, event: ResponderEvent) -> None:
        # A list, not a deque: readers in other threads may iterate it while a turn appends.
        self.events.append(event)
        if len(self.events) > self.max_events:
            del self.events[0]
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:
                _log.exception("mention responder: the on_event callback failed")

    def _now(self) -> float:
        return self._clock() - self._t0

    def _on_mention(self, frame: NotificationFrame) -> None:
        # Runs in the client's worker thread: decide quickly, wake the loop, return.
        mention = Mention.from_frame(frame, self._clock())
        keeper = self._keeper
        with self._lock:
            if keeper is not None and keeper.is_done(frame):
                return
            verdict = self.guard.offer(mention)
            if verdict == "duplicate":
                return
            if keeper is not None and verdict in ("queued", "deferred"):
                keeper.received(frame)
            if verdict in ("queued", "deferred"):
                self.stats.mentions += 1
                detail = "waits for the turn cap's window" if verdict == "deferred" else None
                self.stats.deferred += verdict == "deferred"
                self._record(
                    ResponderEvent(self._now(), "mention", mention.author, [mention.id], detail)
                )
            else:
                self._skip(mention, verdict)
            for evicted in self.guard.take_evicted():
                self._skip(evicted, "overflow")
        if verdict == "queued":
            self._signal()

    def _skip(self, mention: Mention, why: str) -> None:
        if self._keeper is not None:
            self._keeper.skipped(mention, why)  # handled: not offered again after a restart
        self.stats.skipped[why] = self.stats.skipped.get(why, 0) + 1
        self._record(ResponderEvent(self._now(), "skipped", mention.author, [mention.id], why))

    def _signal(self) -> None:
        self._wake.set()
        loop, wake = self._loop, self._async_wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed: nothing to wake
                loop.call_soon_threadsafe(wake.set)

    def _take_batch(self) -> list[Mention]:
        with self._lock:
            batch, skipped = self.guard.next_turn()
            for m, why in skipped:
                self._skip(m, why)
            if batch:
                self._turn_begun(batch)
            return batch

    def _turn_begun(self, batch: list[Mention]) -> None:
        self.stats.turns += 1
        self.stats.batched += len(batch) - 1
        first = min(m.received_at for m in batch)
        self._record(
            ResponderEvent(
                self._now(),
                "turn_start",
                ", ".join(dict.fromkeys(m.author for m in batch)),
                [m.id for m in batch],
                latency=self._clock() - first,
            )
        )

    def _finish(
        self,
        batch: list[Mention],
        result: Any,
        error: BaseException | None,
        prompt: str | None = None,
        *,
        local: bool = True,
    ) -> int:
        """Record the turn's end; the replies it posted. ``local``: the turn came from this
        responder's own guard (not a fleet's shared one), which learns it ended."""
        first = min(m.received_at for m in batch)
        ids = [m.id for m in batch]
        replies = _replies_in(result, prompt) if error is None else 0
        with self._lock:
            if local:
                self.guard.turn_done(replies)
            if error is not None:
                self.stats.errors += 1
                self._record(ResponderEvent(self._now(), "error", None, ids, repr(error)[:300]))
            self.stats.replies += replies
            if replies:
                self._record(
                    ResponderEvent(
                        self._now(),
                        "reply",
                        None,
                        ids,
                        f"{replies} message(s)",
                        latency=self._clock() - first,
                    )
                )
            self._record(ResponderEvent(self._now(), "turn_end", None, ids))
        return replies

    def _config_for(self, batch: list[Mention]) -> RunnableConfig | None:
        return self._config(batch) if callable(self._config) else self._config

    def _prompt_for(self, batch: list[Mention], context: list[ChatFrame]) -> str:
        return self._prompt(batch, context, self.client.handle)

    # ------------------------------------------------------------------ sync face

    def start(self) -> MentionResponder:
        """Listen for mentions and run turns on a worker thread (``agent.invoke``)."""
        if self._running:
            return self
        self._running, self._stopping = True, False
        self.client.start()
        self._open_state()
        self.client.add_mention_listener(self._on_mention)
        self._thread = threading.Thread(
            target=self._thread_main, name="moltcities-mentions", daemon=True
        )
        self._thread.start()
        return self

    def _thread_main(self) -> None:
        self._recover_sync()
        while not self._stopping:
            self._wake.wait(0.5)
            self._wake.clear()
            while not self._stopping and (batch := self._take_batch()):
                result, error, prompt = None, None, None
                try:
                    self._turn_started(batch)
                    prompt = self._prompt_for(batch, self._context_sync())
                    config = self._config_for(batch)
                    result = self.agent.invoke(self._make_input(prompt), config)
                except Exception as exc:
                    error = exc
                    _log.warning("mention responder: the agent failed: %r", exc)
                self._finish(batch, result, error, prompt)
                self._turn_finished(batch)

    def _context_sync(self) -> list[ChatFrame]:
        if self.context_messages <= 0:
            return []
        try:
            return self.client.chat_history(limit=self.context_messages)
        except MoltCitiesError as exc:
            _log.info("mention responder: no Town Square context this turn: %s", exc)
            return []

    def _begin_stop(self) -> bool:
        """Stop taking mentions and wake the loop; False if it wasn't running."""
        if not self._running:
            return False
        self._stopping = True
        with contextlib.suppress(MoltCitiesError):
            self.client.remove_mention_listener(self._on_mention)
        self._signal()
        return True

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking mentions; a running turn finishes first (up to ``timeout``)."""
        if not self._begin_stop():
            return
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._running = False
        self._close_state()

    def _close_state(self) -> None:
        """Release a state store the responder opened itself (``state=path``)."""
        store, self._own_store, self._keeper = self._own_store, None, None
        if store is not None:
            store.close()

    def __enter__(self) -> MentionResponder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ async face

    async def astart(self) -> MentionResponder:
        """Listen for mentions and run turns as a task on this loop (``agent.ainvoke``)."""
        if self._running:
            return self
        self._running, self._stopping = True, False
        self._loop = asyncio.get_running_loop()
        self._async_wake = asyncio.Event()
        await asyncio.to_thread(self.client.start)
        await asyncio.to_thread(self._open_state)
        self.client.add_mention_listener(self._on_mention)
        self._task = asyncio.create_task(self._task_main(), name="moltcities-mentions")
        return self

    async def _task_main(self) -> None:
        assert self._async_wake is not None
        await asyncio.to_thread(self._recover_sync)
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._async_wake.wait(), 0.5)
            self._async_wake.clear()
            while not self._stopping and (batch := self._take_batch()):
                await self._arun_turn(batch)

    async def _arun_turn(self, batch: list[Mention], *, local: bool = True) -> int:
        """Run one turn for ``batch`` (already begun) with ``ainvoke``; the replies posted."""
        result, error, prompt = None, None, None
        try:
            await asyncio.to_thread(self._turn_started, batch)
            prompt = self._prompt_for(batch, await self._context_async())
            config = self._config_for(batch)
            result = await self.agent.ainvoke(self._make_input(prompt), config)
        except Exception as exc:
            error = exc
            _log.warning("mention responder: the agent failed: %r", exc)
        replies = self._finish(batch, result, error, prompt, local=local)
        await asyncio.to_thread(self._turn_finished, batch)
        return replies

    async def _context_async(self) -> list[ChatFrame]:
        if self.context_messages <= 0:
            return []
        try:
            return await self.client.achat_history(limit=self.context_messages)
        except MoltCitiesError as exc:
            _log.info("mention responder: no Town Square context this turn: %s", exc)
            return []

    async def astop(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109 (mirrors stop)
        """Async twin of :meth:`stop`."""
        if not self._begin_stop():
            return
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        self._loop = self._async_wake = None
        self._running = False
        await asyncio.to_thread(self._close_state)

    async def __aenter__(self) -> MentionResponder:
        return await self.astart()

    async def __aexit__(self, *exc: object) -> None:
        await self.astop()

    # ------------------------------------------------------------------ persistence

    def _open_state(self) -> None:
        if self._keeper is not None:
            return
        if self._state_spec is None:
            state = self.client.agent_state
        else:
            store, own = open_store(self._state_spec)
            if own:
                self._own_store = store
            state = store.agent(self.client.agent_id or self.client.me().agent.id)
        if state is None:
            return
        keeper = ResponderStateKeeper(state, self.guard, self._clock)
        with self._lock:
            keeper.restore_guard()
        self._keeper = keeper

    def _recover_sync(self) -> None:
        """Settle a turn a crash cut short, then offer the mentions never handled."""
        keeper = self._keeper
        if keeper is None:
            return
        turn = keeper.unfinished_turn()
        delay = 0.2
        while turn is not None and not self._stopping:
            try:
                chat = self.client.chat_history(after=turn.get("after"), limit=200)
            except MoltCitiesError as exc:
                # Until the chat can say whether the reply went out, neither answer again nor
                # drop the mentions: wait and ask again.
                _log.info("mention responder: can't check the interrupted turn yet: %s", exc)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            me = {x.lower() for x in self._own_ids()} | self._own_ids()
            with self._lock:
                replied = keeper.settle_turn(turn, chat, me)
            _log.info(
                "mention responder: the turn cut short by a restart had %s",
                "replied: not answering again" if replied else "not replied: running it again",
            )
            break
        for frame in keeper.inbox():
            if frame.sender_handle is None and (h := self.client.handle_of(frame.sender_id)):
                frame = frame.model_copy(update={"handle_hint": h})
            self._on_mention(frame)

    def _turn_started(self, batch: list[Mention]) -> None:
        if self._keeper is not None:
            st = self.client.agent_state
            last = st.get("last_post_at") if st is not None else None
            self._keeper.turn_started(batch, last)

    def _turn_finished(self, batch: list[Mention]) -> None:
        if self._keeper is not None:
            try:
                self._keeper.turn_finished(batch)
            except MoltCitiesError as exc:
                _log.error("mention responder: saving the finished turn failed: %s", exc)

    # ------------------------------------------------------------------ views

    @property
    def history(self) -> list[ResponderEvent]:
        """What happened, oldest first (the same list as :attr:`events`)."""
        return self.events

    def table(self) -> list[dict[str, Any]]:
        """Events as plain rows (for pandas, a notebook table or JSON)."""
        return [asdict(e) for e in self.events]
