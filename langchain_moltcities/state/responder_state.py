"""What :class:`~langchain_moltcities.mentions.MentionResponder` keeps across restarts.

- ``mention_done``: every mention handled (answered or skipped), under its own id and the
  chat message it points at, so neither a re-delivered notification nor a mention recovered
  from back-filled chat is answered again.
- ``mention_inbox`` (shared with the client): mentions received and not yet handled; a
  restart offers them again, so none raised before a crash goes unanswered.
- ``turn``: the turn in progress (its mentions and the time after which its reply would
  show). A crash mid-turn leaves it; on restart the chat says whether the reply went out:
  an own message after that time means answered, none means the turn runs again.
- ``guard``: the cooldowns and the turn/reply cap windows, in wall-clock time.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from langchain_moltcities.protocol import ChatFrame, NotificationFrame, parse_timestamp
from langchain_moltcities.state.base import AgentState
from langchain_moltcities.state.client_state import mention_keys

if TYPE_CHECKING:
    from langchain_moltcities.mentions import Mention, MentionGuard

__all__ = ["ResponderStateKeeper"]

_EPOCH = datetime.fromtimestamp(0, UTC)

_log = logging.getLogger("langchain_moltcities.state")


def _frame_keys(m: Mention) -> list[str]:
    return mention_keys(m.frame) if m.frame is not None else [m.id]


class ResponderStateKeeper:
    """Loads and saves one responder's guard, done set, inbox and in-flight turn."""

    def __init__(self, state: AgentState, guard: MentionGuard, clock: Callable[[], float]) -> None:
        self.state, self.guard, self._clock = state, guard, clock

    # ------------------------------------------------------------------ start

    def restore_guard(self) -> None:
        """Seed the guard: mentions done are duplicates, windows and cooldowns carry on."""
        for key in self.state.members("mention_done"):
            self.guard.remember(key)
        raw = self.state.get("guard")
        if raw is None:
            return
        shift = self._clock() - time.time()  # wall-clock time -> the guard's clock
        try:
            saved = json.loads(raw)
            self.guard.restore(
                turns=[t + shift for t in saved.get("turns", [])],
                replies=[t + shift for t in saved.get("replies", [])],
                answered={k: t + shift for k, t in saved.get("answered", {}).items()},
            )
        except (ValueError, TypeError, AttributeError) as exc:
            _log.warning("stored mention guard state unreadable (%s); starting it afresh", exc)

    def unfinished_turn(self) -> dict[str, Any] | None:
        """The turn a previous run started and did not finish, if any."""
        raw = self.state.get("turn")
        try:
            turn = json.loads(raw) if raw else None
        except ValueError:
            return None
        return turn if isinstance(turn, dict) else None

    def settle_turn(self, turn: dict[str, Any], chat: Sequence[ChatFrame], me: set[str]) -> bool:
        """Decide a turn a crash interrupted: True (and marked done) if it had replied."""
        after = parse_timestamp(turn.get("after"))
        own = [c for c in chat if c.agent_id in me or (c.agent_handle or "").lower() in me]
        replied = any(after is None or ((dt := c.created) is not None and dt > after) for c in own)
        # The newest own post seen is where the next turn's reply must come after: a run
        # killed between its post and saving the post's time would otherwise leave an older
        # time, and the next turn cut short would take that post for its own reply.
        latest = max(own, key=lambda c: c.created or _EPOCH, default=None)
        if latest is not None and latest.created is not None:
            self._note_post(latest.created_at or "")
        keys = [k for k in turn.get("keys", []) if isinstance(k, str)]
        if replied:
            self.state.add("mention_done", dict.fromkeys(keys, "answered"))
            self.state.discard("mention_inbox", [k for k in keys if not k.startswith("chat:")])
            for key in keys:
                self.guard.remember(key)
        self.state.set("turn", None)
        return replied

    def inbox(self) -> list[NotificationFrame]:
        """Mentions received and not handled, oldest first."""
        out = []
        for item_id, raw in self.state.members("mention_inbox").items():
            try:
                frame = NotificationFrame.model_validate_json(raw)
            except ValueError:
                self.state.discard("mention_inbox", [item_id])
                continue
            if not any(self.state.contains("mention_done", k) for k in mention_keys(frame)):
                out.append(frame)
        return out

    # ------------------------------------------------------------------ as it runs

    def is_done(self, frame: NotificationFrame) -> bool:
        """Whether this mention was handled before (answered or skipped)."""
        return any(self.state.contains("mention_done", k) for k in mention_keys(frame))

    def received(self, frame: NotificationFrame) -> None:
        """A mention arrived: keep it until it is handled."""
        self.state.add("mention_inbox", {frame.id: frame.model_dump_json()})

    def skipped(self, mention: Mention, why: str) -> None:
        """A mention was skipped for ``why``: handled."""
        self._done([mention], why)

    def _note_post(self, created_at: str) -> None:
        new, old = parse_timestamp(created_at), parse_timestamp(self.state.get("last_post_at"))
        if new is not None and (old is None or new > old):
            self.state.set("last_post_at", created_at)

    def turn_started(self, batch: Sequence[Mention], last_post_at: str | None) -> None:
        """Written, and made durable, before the agent runs."""
        bounds = [parse_timestamp(last_post_at), parse_timestamp(self.state.get("last_post_at"))]
        bounds += [m.frame.created for m in batch if m.frame is not None]
        known = [b for b in bounds if b is not None]
        after: datetime | None = max(known) if known else None
        keys = [k for m in batch for k in _frame_keys(m)]
        self.state.set(
            "turn",
            json.dumps({"keys": keys, "after": after.isoformat() if after else None}),
        )
        self._save_guard()
        self.state.flush()

    def turn_finished(self, batch: Sequence[Mention]) -> None:
        """The turn answering ``batch`` ended: its mentions are handled."""
        self._done(batch, "answered")
        self.state.set("turn", None)
        self._save_guard()
        self.state.flush()

    def _done(self, batch: Sequence[Mention], verdict: str) -> None:
        keys = [k for m in batch for k in _frame_keys(m)]
        self.state.add("mention_done", dict.fromkeys(keys, verdict))
        self.state.discard("mention_inbox", [m.id for m in batch])

    def _save_guard(self) -> None:
        shift = time.time() - self._clock()
        turns, replies, answered = self.guard.windows()
        self.state.set(
            "guard",
            json.dumps(
                {
                    "turns": [t + shift for t in turns],
                    "replies": [t + shift for t in replies],
                    "answered": {k: t + shift for k, t in answered.items()},
                }
            ),
        )
