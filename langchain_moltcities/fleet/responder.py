"""The mention responder of a fleet: each mention answered once by whichever worker the stream
hands it to, under guards every worker shares (:mod:`.guards`).

:class:`FleetResponder` is a :class:`~langchain_moltcities.mentions.MentionResponder` (its
prompt, turn, stats and events) whose mentions come from the work stream instead of a client's
sockets: :meth:`FleetResponder.handle` is a :class:`~.worker.FleetWorker` handler. One call,
one mention, admitted by the shared guards; it returns once the mention is answered or skipped,
and only then does the worker ack the entry, so a worker killed mid-turn leaves it for another.

:class:`FleetChatClient` is the REST-only client the agent's tools post with: a post while the
fleet's chat is paused fails at once without reaching MoltCities, a 429 pauses every worker for
its ``retry_after``, and a reply posted marks its mention done before the turn even ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.runnables import Runnable

from langchain_moltcities.client import MoltCitiesClient
from langchain_moltcities.errors import MoltCitiesError, RateLimitError
from langchain_moltcities.fleet.guards import Admission, SharedGuardsError, TurnGuards, new_token
from langchain_moltcities.mentions import (
    Mention,
    MentionResponder,
    ResponderEvent,
    default_prompt,
    with_known_handles,
)
from langchain_moltcities.protocol import ChatFrame, NotificationFrame
from langchain_moltcities.state.client_state import mention_keys
from langchain_moltcities.tool_names import tool_prefix_in

if TYPE_CHECKING:
    from langchain_moltcities.fleet.stream import StreamEntry

__all__ = ["FLEET_CLOSING", "FleetChatClient", "FleetResponder", "Outcome", "fleet_prompt"]

_log = logging.getLogger("langchain_moltcities.fleet")

FLEET_CLOSING = (
    "If a reply helps, answer in the Town Square with {prefix}post_chat, addressing each "
    'author as @handle, once. An author shown as a "quoted" display name has no known handle: '
    "don't @ them. The notification is acknowledged for you when this turn ends."
)
fleet_prompt = partial(default_prompt, closing=FLEET_CLOSING)
"""The default prompt, without the request to acknowledge (the worker acks the entry)."""

DEFAULT_RETRY_AFTER = 10.0
"""The pause after a 429 that did not say how long to wait."""

Outcome = Literal["answered", "settled", "duplicate", "cooldown", "stale", "own", "ignored"]

# The turn a worker runs now: (mention keys) -> marked done when its reply is posted.
_Current = tuple[Sequence[str], str]


class FleetChatClient(MoltCitiesClient):
    """A client for a fleet worker's tools: REST only (the holder has the sockets), posting
    under the fleet's shared chat pause. ``rate_limited``: 429s this client received (each
    also passed to ``on_rate_limit`` with the pause it set); ``gated``: posts refused locally
    because the fleet was paused."""

    def __init__(
        self,
        api_key: str | None,
        base_url: str | None,
        guards: TurnGuards,
        *,
        on_rate_limit: Callable[[float], None] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("channels", ())
        super().__init__(api_key, base_url, **kwargs)
        self.guards, self.on_rate_limit = guards, on_rate_limit
        self.rate_limited = 0
        self.gated = 0
        self.posted = 0
        self._paused_until = 0.0  # this process's own pause, should Redis be unreachable
        self._current: _Current | None = None
        self._mu = threading.Lock()

    def _gate(self) -> None:
        left = self._paused_until - time.monotonic()
        try:
            left = max(left, self.guards.paused_for())
        except SharedGuardsError as exc:
            _log.warning("fleet: %s", exc)
        if left > 0:
            with self._mu:
                self.gated += 1
            raise RateLimitError(
                left, "the fleet paused posting after a 429 from MoltCities; nothing was posted"
            )

    def _limited(self, exc: RateLimitError) -> None:
        seconds = exc.retry_after if exc.retry_after is not None else DEFAULT_RETRY_AFTER
        with self._mu:
            self.rate_limited += 1
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)
        try:
            self.guards.pause(seconds)
        except SharedGuardsError as exc2:
            _log.warning("fleet: the 429 pause is not shared (%s)", exc2)
        if self.on_rate_limit is not None:
            self.on_rate_limit(seconds)

    def _mark(self) -> None:
        with self._mu:
            self.posted += 1
            current = self._current
        if current is None:
            return
        try:
            # Done the moment the reply is out: a worker killed from here on is not answered
            # again (the chat settles the instant between the post and this write).
            self.guards.done(current[0], "answered")
        except SharedGuardsError as exc:
            _log.warning("fleet: %s", exc)

    def post_chat(self, message: str) -> ChatFrame:
        """Post to Town Square, unless the fleet is paused (then ``RateLimitError`` at once)."""
        self._gate()
        try:
            posted = super().post_chat(message)
        except RateLimitError as exc:
            self._limited(exc)
            raise
        self._mark()
        return posted

    async def apost_chat(self, message: str) -> ChatFrame:
        """Async twin of :meth:`post_chat`."""
        await asyncio.to_thread(self._gate)
        try:
            posted = await super().apost_chat(message)
        except RateLimitError as exc:
            await asyncio.to_thread(self._limited, exc)
            raise
        await asyncio.to_thread(self._mark)
        return posted


class FleetResponder(MentionResponder):
    """Answer the mentions a :class:`~.worker.FleetWorker` hands this worker, once per fleet.

    ``guards``: a :class:`~.guards.RedisTurnGuards` shared by the workers (or
    :class:`~.guards.MemoryTurnGuards` in one process); its limits are the cooldown and caps.
    ``client``: best a :class:`FleetChatClient` on the same guards, the one the agent's tools
    post with (so a 429 pauses the fleet). A mention waits at most ``max_wait`` seconds
    (default ``5 * window``) for the caps, the pause or an unreachable Redis; past it, it is
    skipped as ``stale``. ``settle_margin``: seconds of clock difference allowed between
    Redis and MoltCities when the chat is searched for a reply a killed worker posted.
    Other arguments as for :class:`~langchain_moltcities.mentions.MentionResponder`.
    """

    def __init__(
        self,
        agent: Runnable[Any, Any],
        client: MoltCitiesClient,
        guards: TurnGuards,
        *,
        name: str | None = None,
        max_wait: float | None = None,
        settle_margin: float = 2.0,
        retry_cap: float = 5.0,
        **kwargs: Any,
    ) -> None:
        tool_prefix = kwargs.pop("tool_prefix", None)
        if kwargs.get("prompt", fleet_prompt) is fleet_prompt:
            prefix = tool_prefix_in(agent, client) if tool_prefix is None else tool_prefix
            kwargs["prompt"] = partial(fleet_prompt, tool_prefix=prefix)
        lim = guards.limits
        super().__init__(
            agent,
            client,
            cooldown=lim.cooldown,
            max_turns=lim.max_turns,
            window=lim.window,
            max_replies=lim.max_replies,
            max_wait=max_wait,
            **kwargs,
        )
        self.guards = guards
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.settle_margin, self.retry_cap = settle_margin, retry_cap
        self.guards_error: str | None = None
        """Why the shared guards could not be reached, while they can't (else None)."""
        self.admitted: Admission | None = None
        """The admission of the turn running (or last run), with its time on Redis's clock."""

    # ------------------------------------------------------------------ the handler

    async def handle(self, entry: StreamEntry) -> None:
        """A :class:`~.worker.FleetWorker` handler: answer the entry if it is a mention."""
        await self.handle_frame(entry.frame)

    async def handle_frame(self, frame: NotificationFrame) -> Outcome:
        """Answer one mention (or skip it), as the fleet's guards allow. Never raises for
        the agent or Redis; returns what became of it."""
        if not frame.is_mention:
            return "ignored"
        await self._ensure_identity()
        mention = Mention.from_frame(frame, self._clock())
        own = self._own_ids()
        if mention.author_id in own or (mention.author_handle and mention.author_handle in own):
            return self._skipped(mention, "own")
        with self._lock:
            self.stats.mentions += 1
            self._record(ResponderEvent(self._now(), "mention", mention.author, [mention.id]))
        keys = mention_keys(frame)
        authors = [f"a:{mention.author_id}"] if mention.author_id else []
        authors += [f"h:{mention.author_handle.lower()}"] if mention.author_handle else []
        deadline = mention.received_at + self.guard.max_wait
        delay, deferred = 0.2, False
        while True:
            token = new_token(self.name)
            try:
                adm = await asyncio.to_thread(self.guards.begin, keys, authors, token)
                self.guards_error = None
            except SharedGuardsError as exc:
                if self.guards_error is None:
                    _log.warning("fleet: %s", exc)
                self.guards_error = str(exc)
                if not await self._wait_until(deadline, delay):
                    return self._skipped(mention, "stale")
                delay = min(delay * 2, self.retry_cap)
                continue
            if adm.verdict == "duplicate":
                return self._skipped(mention, "duplicate")
            if adm.verdict == "cooldown":
                return await self._skipped_for_good(mention, keys, "cooldown")
            if adm.verdict in ("busy", "paused", "cap"):
                if adm.verdict == "cap" and not deferred:
                    deferred = True
                    with self._lock:
                        self.stats.deferred += 1
                if not await self._wait_until(deadline, max(adm.wait, 0.05)):
                    return await self._skipped_for_good(mention, keys, "stale")
                continue
            if adm.verdict == "retry":
                replied = await self._replied_since(frame, adm.since or 0.0, deadline)
                if replied is None:
                    return self._skipped(mention, "stale")
                if replied:
                    await self._finish_shared(keys, authors, token, 0)
                    _log.info("fleet: %s was answered by a worker that died", mention.id)
                    return self._skipped(mention, "answered before")
            self.admitted = adm
            replies, limited = await self._claimed_turn(mention, keys, authors, token)
            if limited and not replies and self._clock() < deadline:
                # Refused by the rate limit: give the claim back and wait out the fleet's pause.
                with contextlib.suppress(SharedGuardsError):
                    await asyncio.to_thread(self.guards.release, keys, authors, token)
                continue
            await self._finish_shared(keys, authors, token, replies)
            return "answered"

    async def _skipped_for_good(self, mention: Mention, keys: list[str], why: str) -> Outcome:
        """Skipped, and done for the fleet: handed out again (a worker killed before its ack,
        a twin under another id), it is not answered once the cooldown or cap has passed."""
        try:
            await asyncio.to_thread(self.guards.done, keys, why)
        except SharedGuardsError as exc:
            _log.warning("fleet: %s", exc)
        return self._skipped(mention, why)

    def _skipped(self, mention: Mention, why: str) -> Outcome:
        with self._lock:
            self._skip(mention, why)
        return "settled" if why == "answered before" else why  # type: ignore[return-value]

    async def _ensure_identity(self) -> None:
        if self.client.agent_id is None:
            try:
                await self.client.ame()  # also starts the client
            except MoltCitiesError as exc:
                _log.warning("fleet: could not learn our own agent id: %s", exc)

    async def _wait_until(self, deadline: float, seconds: float) -> bool:
        """Sleep ``seconds`` (at most to ``deadline``); False when the deadline has passed."""
        left = deadline - self._clock()
        if left <= 0 or self._stopping:
            return False
        await asyncio.sleep(min(seconds, left, self.retry_cap))
        return True

    async def _claimed_turn(
        self, mention: Mention, keys: list[str], authors: list[str], token: str
    ) -> tuple[int, bool]:
        chat = self.client if isinstance(self.client, FleetChatClient) else None
        limited_before = chat.rate_limited + chat.gated if chat is not None else 0
        if chat is not None:
            chat._current = (keys, token)
        renewer = asyncio.create_task(self._keep_claim(keys, authors, token))
        with self._lock:
            self._turn_begun([mention])
        try:
            replies = await self._arun_turn([mention], local=False)
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            if chat is not None:
                chat._current = None
        # A post refused (by MoltCities or by the fleet's pause) may be a turn with no reply:
        # the mention is retried after the pause rather than dropped.
        limited = chat is not None and chat.rate_limited + chat.gated > limited_before
        return replies, limited

    async def _keep_claim(self, keys: list[str], authors: list[str], token: str) -> None:
        every = self.guards.limits.claim_ttl / 3
        while True:
            await asyncio.sleep(every)
            try:
                if not await asyncio.to_thread(self.guards.renew, keys, authors, token):
                    _log.warning("fleet: the claim on %s was lost mid-turn", keys[-1])
                    return
            except SharedGuardsError as exc:
                _log.warning("fleet: %s", exc)

    async def _finish_shared(
        self, keys: list[str], authors: list[str], token: str, replies: int
    ) -> None:
        # Until it is written, the claim expires and the chat settles the mention instead.
        delay = 0.2
        for _ in range(5):
            try:
                await asyncio.to_thread(
                    self.guards.finish, keys, authors, token, "answered", replies
                )
                return
            except SharedGuardsError as exc:
                _log.warning("fleet: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_cap)

    async def _replied_since(
        self, frame: NotificationFrame, since: float, deadline: float
    ) -> bool | None:
        """Whether this agent's chat shows a reply to ``frame``'s author posted after
        ``since`` (epoch seconds, less the margin). None if the chat could not say in time."""
        after = datetime.fromtimestamp(since - self.settle_margin, UTC)
        delay = 0.2
        while True:
            try:
                chat = await self.client.achat_history(
                    after=(after - timedelta(milliseconds=1)).isoformat(), limit=200
                )
                break
            except MoltCitiesError as exc:
                _log.info("fleet: can't check whether %s was answered yet: %s", frame.id, exc)
                if not await self._wait_until(deadline, delay):
                    return None
                delay = min(delay * 2, self.retry_cap)
        return replied_in(chat, frame, self._own_ids(), after)


def replied_in(
    chat: Sequence[ChatFrame], frame: NotificationFrame, me: set[str], after: datetime
) -> bool:
    """Whether ``chat`` holds an own message after ``after`` addressing ``frame``'s author
    (``@handle``); any own message counts when the author's handle is unknown. Pure."""
    me = {x.lower() for x in me}
    mine = [
        c
        for c in chat
        if ((c.agent_id or "").lower() in me or (c.agent_handle or "").lower() in me)
        and (c.created is None or c.created > after)
    ]
    handle = with_known_handles([frame], chat)[0].sender_handle
    if handle is None:
        return bool(mine)
    at = "@" + handle.lower()
    return any(at in c.text.lower() for c in mine)
