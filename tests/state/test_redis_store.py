"""The Redis store on a real server: keys, bounds, TTLs, secrets, and Redis going away."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

from langchain_moltcities import MoltCitiesClient
from langchain_moltcities.fleet.embedded import EmbeddedRedis
from langchain_moltcities.state import KIND_CAPACITY, StateError, open_store
from langchain_moltcities.state.redis import RedisStore, agent_key, redact_url


def test_a_redis_url_opens_a_redis_store(redis_url: str) -> None:
    store, own = open_store(redis_url)
    try:
        assert isinstance(store, RedisStore) and own
        assert store.persistent
    finally:
        store.close()


def test_keys_are_per_agent_under_one_hash_tag_and_expire(redis_url: str) -> None:
    store = RedisStore(redis_url, ttl=3600)
    store.agent("agent_1").set("chat_cursor", "c1")
    store.agent("agent_1").add("acked", {"n1": "alias"})
    store.agent("agent_2").set("chat_cursor", "c2")
    store.flush()
    store.close()
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    keys = sorted(r.keys("*"))
    assert keys == [
        "moltcities:{agent_1}:ids:acked",
        "moltcities:{agent_1}:ord:acked",
        "moltcities:{agent_1}:vals",
        "moltcities:{agent_2}:vals",
    ]
    for key in keys:
        assert 3590 < r.ttl(key) <= 3600, key
    assert r.hget("moltcities:{agent_2}:vals", "chat_cursor") == "c2"
    # Braces inside an agent id cannot break out of the hash tag.
    assert agent_key("p", "a}b{c", "vals") == "p:{a)b(c}:vals"
    r.close()


def test_no_ttl_means_keys_stay(redis_url: str) -> None:
    store = RedisStore(redis_url, ttl=None)
    store.agent("a").set("k", "v")
    store.close()
    with redis.Redis.from_url(redis_url) as r:
        assert r.ttl("moltcities:{a}:vals") == -1


def test_trim_keeps_values_and_order_in_step(redis_url: str) -> None:
    store = RedisStore(redis_url)
    cap = KIND_CAPACITY["gap"]
    store.agent("a").add("gap", {f"g{i}": f"v{i}" for i in range(cap + 50)})
    store.close()
    with redis.Redis.from_url(redis_url, decode_responses=True) as r:
        assert r.zcard("moltcities:{a}:ord:gap") == cap
        assert r.hlen("moltcities:{a}:ids:gap") == cap
        assert r.hget("moltcities:{a}:ids:gap", "g49") is None
        assert r.hget("moltcities:{a}:ids:gap", "g50") == "v50"


def test_writes_wait_for_the_batch(redis_url: str) -> None:
    store = RedisStore(redis_url, flush_interval=5.0, batch_size=10_000)
    a = store.agent("a")
    a.add("presented", {f"n{i}": "" for i in range(100)})
    assert a.contains("presented", "n5")
    with redis.Redis.from_url(redis_url) as r:
        assert r.zcard("moltcities:{a}:ord:presented") == 0  # not sent yet
        store.flush()
        assert r.zcard("moltcities:{a}:ord:presented") == 100
    store.close()


def test_password_never_shows(redis_url: str) -> None:
    assert redact_url("redis://:s3cret@host:6379/0") == "redis://:***@host:6379/0"
    assert redact_url("redis://user:s3cret@host/1") == "redis://user:***@host/1"
    store = RedisStore(redis_url.replace("redis://", "redis://:s3cret@"))
    try:
        assert "s3cret" not in repr(store) and "***" in repr(store)
    finally:
        store.close()


def test_unreachable_redis_is_a_clear_error_at_construction(
    redis_factory: Callable[..., EmbeddedRedis],
) -> None:
    server = redis_factory()
    server.stop()  # a port nobody listens on now
    bad = f"redis://:hunter2@127.0.0.1:{server.port}/0"
    with pytest.raises(StateError) as info:
        MoltCitiesClient(api_key="mc_" + "ab" * 32, base_url="http://127.0.0.1:9", state=bad)
    text = str(info.value)
    assert "Redis does not answer" in text and "start it or check the URL" in text
    assert f"127.0.0.1:{server.port}" in text and "hunter2" not in text
    with pytest.raises(StateError, match="not a valid Redis URL"):
        RedisStore("redis://127.0.0.1:notaport/0")


def test_writes_made_while_redis_is_down_arrive_when_it_returns(
    redis_factory: Callable[..., EmbeddedRedis],
) -> None:
    server = redis_factory()
    store = RedisStore(server.url, flush_interval=0.01, connect_timeout=0.5)
    a = store.agent("a")
    a.set("chat_cursor", "before")
    store.flush()
    server.stop()
    a.set("chat_cursor", "while down")
    a.add("acked", {"n1": ""})
    with pytest.raises(StateError, match="kept in memory and sent when Redis answers again"):
        store.flush(timeout=30)
    assert a.get("chat_cursor") == "while down"  # the mirror goes on serving reads
    server.start()  # same port, empty: only what was held back can arrive
    for _ in range(200):  # the first flushes may still meet the reconnect
        try:
            store.flush(timeout=30)
            break
        except StateError:
            continue
    store.close()
    reopened = RedisStore(server.url)
    again = reopened.agent("a")
    assert again.get("chat_cursor") == "while down"
    assert again.members("acked") == {"n1": ""}
    reopened.close()
