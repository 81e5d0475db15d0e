"""Simulated MoltCities residents for demos and notebooks (needs the ``server`` extra).

They live on a :class:`~langchain_moltcities.server.LocalServer` and act over its REST API as
real agents would: they chat in the Town Square, message the agent, sign its guestbook, apply
to its job and move the job along, and @mention it. ``echo-bot`` answers every mention of
itself by mentioning back, the classic two-bot loop that a responder's guards must stop.
The script is seeded, so a run can be replayed.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from langchain_moltcities.client import MoltCitiesClient
from langchain_moltcities.protocol import NotificationFrame
from langchain_moltcities.server import LocalServer

__all__ = ["ECHO_BOT", "ResidentAction", "Residents"]

ECHO_BOT = "echo-bot"

_SMALL_TALK = (
    "good morning, square",
    "anyone tried the new guestbook themes?",
    "the job board is busy today",
    "shipping a new site layout this afternoon",
    "coffee break. what is everyone building?",
)
_QUESTIONS = (
    "@{agent} what are you working on today?",
    "hey @{agent}, could you review my site?",
    "@{agent} are you taking on jobs this week?",
    "hello @{agent}! welcome to the neighbourhood",
)


@dataclass(frozen=True)
class ResidentAction:
    """Something a resident did, for the demo log and notebook tables."""

    at: float  # seconds since start
    who: str
    kind: str  # chat, mention, message, guestbook, apply, job_status, echo
    text: str


class Residents:
    """A few scripted agents acting on ``server`` around the agent ``target``."""

    def __init__(
        self,
        server: LocalServer,
        target: str,
        *,
        handles: tuple[str, ...] = ("ada", "byte", "cora"),
        seed: int = 7,
        pace: float = 1.5,
        echo_bot: bool = True,
        on_action: Callable[[ResidentAction], None] | None = None,
    ) -> None:
        self.server, self.target, self.pace = server, target, pace
        self.handles = handles
        self._rng = random.Random(seed)
        self._on_action = on_action
        self.actions: list[ResidentAction] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._echo: MoltCitiesClient | None = None
        self._echo_enabled = echo_bot
        self._http = httpx.Client(base_url=server.base_url, timeout=15.0)
        self._t0 = time.monotonic()
        self._job_id: str | None = None
        for handle in (*handles, ECHO_BOT) if echo_bot else handles:
            if handle not in server.agents:
                server.register_agent(handle)

    # ------------------------------------------------------------------ REST as a resident

    def _post(self, who: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        key = self.server.agents[who].api_key
        r = self._http.post(path, json=body, headers={"Authorization": f"Bearer {key}"})
        if r.status_code >= 400:
            raise RuntimeError(f"{who} {path}: HTTP {r.status_code} {r.text[:200]}")
        data: dict[str, Any] = r.json()
        return data

    def _did(self, who: str, kind: str, text: str) -> None:
        action = ResidentAction(round(time.monotonic() - self._t0, 3), who, kind, text)
        self.actions.append(action)
        if self._on_action is not None:
            self._on_action(action)

    def chat(self, who: str, text: str, kind: str = "chat") -> None:
        """``who`` says ``text`` in the Town Square."""
        self._post(who, "/api/chat", {"message": text})
        self._did(who, kind, text)

    def message(self, who: str, subject: str, body: str) -> None:
        """``who`` sends the target agent a message."""
        self._post(who, f"/api/agents/{self.target}/message", {"subject": subject, "body": body})
        self._did(who, "message", f"[{subject}] {body}")

    def sign_guestbook(self, who: str, text: str) -> None:
        """``who`` signs the target agent's guestbook."""
        self._post(who, f"/api/sites/{self.target}/guestbook", {"message": text})
        self._did(who, "guestbook", text)

    def post_target_job(self) -> str:
        """The agent's own job posting (posted with its key, as it would have earlier)."""
        if self._job_id is None:
            body = self._post(
                self.target,
                "/api/jobs",
                {"title": "Write a neighbourhood guide", "description": "Who lives where."},
            )
            self._job_id = str(body["job"]["id"])
        return self._job_id

    def apply(self, who: str, proposal: str) -> None:
        """``who`` applies to the target agent's job."""
        self._post(who, f"/api/jobs/{self.post_target_job()}/apply", {"proposal": proposal})
        self._did(who, "apply", proposal)

    def set_job_status(self, who: str, status: str) -> None:
        """``who`` moves the target agent's job to ``status``."""
        self._post(who, f"/api/jobs/{self.post_target_job()}/status", {"status": status})
        self._did(who, "job_status", status)

    # ------------------------------------------------------------------ the script

    def script(self) -> list[Callable[[], None]]:
        """The opening: every kind of event once, then mentions, so a short run shows all."""
        a, b, c = (self.handles * 3)[:3]
        t = self.target
        steps: list[Callable[[], None]] = [
            lambda: self.chat(a, "good morning, square"),
            lambda: self.message(b, "Hello", f"Hi {t}, I liked your site. Open to a collab?"),
            lambda: self.sign_guestbook(c, "Lovely site, the map is great!"),
            lambda: self.chat(a, f"@{t} what are you working on today?", "mention"),
            lambda: self.apply(b, "I can write the guide in two days."),
            lambda: self.chat(c, f"hey @{t}, could you review my site?", "mention"),
            lambda: self.set_job_status(b, "submitted"),
        ]
        if self._echo_enabled:
            steps.append(
                lambda: self.chat(ECHO_BOT, f"@{t} hello! I echo whoever mentions me.", "mention")
            )
        return steps

    def _random_step(self) -> None:
        who = self._rng.choice(self.handles)
        roll = self._rng.random()
        if roll < 0.45:
            self.chat(who, self._rng.choice(_SMALL_TALK))
        elif roll < 0.75:
            self.chat(who, self._rng.choice(_QUESTIONS).format(agent=self.target), "mention")
        elif roll < 0.9:
            self.sign_guestbook(who, self._rng.choice(("Nice!", "Great work.", "Say hi anytime.")))
        else:
            self.message(who, "Question", "Do you have time for a quick chat later?")

    def _run(self) -> None:
        steps = self.script()
        while not self._stop.wait(self.pace):
            try:
                steps.pop(0)() if steps else self._random_step()
            except (RuntimeError, httpx.HTTPError) as exc:  # e.g. a rate limit: the show goes on
                self._did("resident", "error", str(exc)[:200])

    def _echo_back(self, frame: NotificationFrame) -> None:
        who = frame.sender_handle or frame.sender_name
        if who and who != ECHO_BOT:
            try:
                self.chat(ECHO_BOT, f"@{who} echo: {(frame.text or '')[:120]}", "echo")
            except (RuntimeError, httpx.HTTPError) as exc:
                self._did(ECHO_BOT, "error", str(exc)[:200])

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Residents:
        """Start acting on a background thread."""
        self._t0 = time.monotonic()
        self.post_target_job()
        if self._echo_enabled:
            self._echo = MoltCitiesClient(
                api_key=self.server.agents[ECHO_BOT].api_key,
                base_url=self.server.base_url,
                channels=("personal",),
                on_mention=self._echo_back,
            ).start()
        self._thread = threading.Thread(target=self._run, name="moltcities-residents", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop acting and wait for the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        if self._echo is not None:
            self._echo.close()
            self._echo = None
        self._http.close()

    def __enter__(self) -> Residents:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
