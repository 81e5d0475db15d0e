"""Unit tests of the pure reconnect policy."""

from __future__ import annotations

import random

import pytest

from langchain_moltcities.backoff import (
    Action,
    Backoff,
    decide_close,
    decide_handshake_status,
    decide_network_error,
)


def test_delays_grow_exponentially_up_to_the_cap_without_jitter() -> None:
    b = Backoff(base=1.0, cap=30.0, jitter=0.0)
    assert [b.next_delay() for _ in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]


def test_jitter_stays_within_its_band_and_varies() -> None:
    b = Backoff(base=2.0, cap=30.0, jitter=0.5, rng=random.Random(7))
    seen = []
    for _ in range(50):
        b.reset()
        d = b.next_delay()
        assert 1.0 <= d <= 2.0
        seen.append(d)
    assert len(set(seen)) > 10


def test_jittered_delay_never_exceeds_the_cap() -> None:
    b = Backoff(base=1.0, cap=5.0, jitter=1.0, rng=random.Random(1))
    for _ in range(200):
        assert 0 <= b.next_delay() <= 5.0


def test_huge_attempt_counts_do_not_overflow() -> None:
    b = Backoff(base=1.0, cap=30.0, jitter=0.0)
    b.attempts = 10_000
    assert b.next_delay() == 30.0


def test_resets_only_after_a_stable_connection() -> None:
    b = Backoff(base=1.0, cap=30.0, jitter=0.0, stable_after=10.0)
    for _ in range(3):
        b.next_delay()
    # Accepted, then closed after 2 s: a flapping server keeps the delay growing.
    b.connected(100.0)
    b.disconnected(102.0)
    assert b.next_delay() == 8.0
    # Up for 10 s: the next delay starts from the base again.
    b.connected(200.0)
    b.disconnected(210.0)
    assert b.next_delay() == 1.0


def test_disconnect_without_connect_keeps_attempts() -> None:
    b = Backoff(base=1.0, jitter=0.0, stable_after=0.0)
    b.next_delay()
    b.disconnected(5.0)
    assert b.attempts == 1


@pytest.mark.parametrize(("base", "cap", "jitter"), [(0, 1, 0), (1, -1, 0), (1, 1, 1.5)])
def test_rejects_nonsense_parameters(base: float, cap: float, jitter: float) -> None:
    with pytest.raises(ValueError):
        Backoff(base, cap, jitter=jitter)


def test_normal_close_stops() -> None:
    d = decide_close(1000, "bye")
    assert d.action is Action.STOP and d.state == "closed"


def test_displaced_stops_and_says_why() -> None:
    d = decide_close(4003, "New connection opened")
    assert d.action is Action.STOP
    assert d.state == "displaced"
    assert "another connection" in d.reason and "New connection opened" in d.reason


@pytest.mark.parametrize("code", [4000, 1006, None, 1001, 1011, 1012, 4009])
def test_idle_timeout_and_abnormal_closes_reconnect(code: int | None) -> None:
    d = decide_close(code)
    assert d.action is Action.RECONNECT and d.state == "backing_off"


@pytest.mark.parametrize("status", [401, 403])
def test_handshake_auth_failures_are_fatal_with_a_clear_reason(status: int) -> None:
    d = decide_handshake_status(status)
    assert d.action is Action.FATAL and d.state == "failed"
    assert "API key" in d.reason and str(status) in d.reason


@pytest.mark.parametrize("status", [429, 500, 502, 503, 404, 426])
def test_other_handshake_failures_retry(status: int) -> None:
    assert decide_handshake_status(status).action is Action.RECONNECT


def test_network_errors_retry() -> None:
    d = decide_network_error("connection refused")
    assert d.action is Action.RECONNECT and "connection refused" in d.reason
