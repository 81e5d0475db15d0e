"""Handle look-ups: bounded in flight, one per id, and a mention's waits for a slot."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from langchain_moltcities.lookups import Lookups

WAIT = 30.0


class Held:
    """A look-up that runs until released, recording each start."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.release: dict[str, asyncio.Event] = {}

    def __call__(self, key: str) -> Callable[[], Coroutine[Any, Any, None]]:
        async def look_up() -> None:
            self.started.append(key)
            await self.release.setdefault(key, asyncio.Event()).wait()

        return look_up

    def free(self, key: str) -> None:
        self.release.setdefault(key, asyncio.Event()).set()


def test_a_full_set_skips_background_look_ups_and_runs_each_id_once() -> None:
    async def main() -> None:
        held, seen = Held(), list[asyncio.Future[None]]()
        lookups = Lookups(2, on_start=seen.append)
        a = lookups.start("a", held("a"))
        assert lookups.start("a", held("a")) is a  # one per id
        assert lookups.start("b", held("b")) is not None
        assert lookups.start("c", held("c")) is None  # all slots taken: skipped
        await asyncio.sleep(0)
        assert held.started == ["a", "b"] and len(seen) == 2
        held.free("a")
        held.free("b")
        await asyncio.wait_for(asyncio.gather(*seen), WAIT)
        assert len(lookups) == 0

    asyncio.run(main())


def test_a_mention_look_up_waits_for_a_slot_instead_of_being_skipped() -> None:
    async def main() -> None:
        held = Held()
        lookups = Lookups(2)
        lookups.start("flood-1", held("flood-1"))
        lookups.start("flood-2", held("flood-2"))
        mention = asyncio.ensure_future(lookups.run("author", held("author"), WAIT))
        for _ in range(5):
            await asyncio.sleep(0)
        assert "author" not in held.started and not mention.done()
        held.free("flood-1")  # a slot frees: the mention's look-up takes it
        held.free("author")
        assert await asyncio.wait_for(mention, WAIT) is True
        assert held.started[-1] == "author"
        held.free("flood-2")

    asyncio.run(main())


def test_a_mention_look_up_gives_up_when_no_slot_frees_in_time() -> None:
    async def main() -> None:
        held = Held()
        lookups = Lookups(1)
        lookups.start("stuck", held("stuck"))
        assert await asyncio.wait_for(lookups.run("author", held("author"), 0.05), WAIT) is False
        assert "author" not in held.started
        held.free("stuck")

    asyncio.run(main())


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Lookups(0)
