"""The state stores on real files: round trips, bounds, and every way a file can be wrong.

Each bad file must give a StateError naming the file and what to do, and keep its bytes.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from langchain_moltcities import MoltCitiesClient
from langchain_moltcities.errors import InvalidArgumentError
from langchain_moltcities.state import (
    KIND_CAPACITY,
    KIND_MAX_BYTES,
    SCHEMA_VERSION,
    MemoryStore,
    SqliteStore,
    StateError,
    StateStore,
    open_store,
)
from langchain_moltcities.state.redis import RedisStore
from langchain_moltcities.state.sqlite import APPLICATION_ID


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(params=["memory", "sqlite", "redis"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], StateStore]:
    """A factory of stores that share one backing (one MemoryStore, one file, one Redis db)."""
    if request.param == "memory":
        shared = MemoryStore()
        return lambda: shared
    if request.param == "redis":
        url: str = request.getfixturevalue("redis_url")
        return lambda: RedisStore(url)
    return lambda: SqliteStore(tmp_path / "agent.db")


def test_values_and_sets_survive_reopening(make_store: Callable[[], StateStore]) -> None:
    store = make_store()
    a = store.agent("agent_1")
    a.set("chat_cursor", "2026-01-01T00:00:00.000Z")
    a.add("acked", {"n1": "msg_1", "n2": ""})
    a.add("presented", {"n1": "n1"})
    a.discard("acked", ["n2"])
    store.agent("agent_2").set("chat_cursor", "other")
    a.flush()
    store.close()

    again = make_store()
    b = again.agent("agent_1")
    assert b.get("chat_cursor") == "2026-01-01T00:00:00.000Z"
    assert b.members("acked") == {"n1": "msg_1"}
    assert b.contains("presented", "n1")
    assert again.agent("agent_2").get("chat_cursor") == "other"
    b.set("chat_cursor", None)
    b.flush()
    again.close()
    assert make_store().agent("agent_1").get("chat_cursor") is None


def test_sets_are_bounded_oldest_first(make_store: Callable[[], StateStore]) -> None:
    store = make_store()
    cap = KIND_CAPACITY["chat_seen"]
    a = store.agent("a")
    for start in range(0, cap + 300, 100):  # several batches, as reads come
        a.add("chat_seen", {f"c{i}": "" for i in range(start, start + 100)})
    a.flush()
    store.close()
    kept = make_store().agent("a").members("chat_seen")
    assert len(kept) == cap
    assert "c0" not in kept and f"c{cap + 299}" in kept
    assert next(iter(kept)) == "c300"  # oldest first, in insertion order


def test_unread_notifications_are_bounded_in_bytes_too(
    make_store: Callable[[], StateStore],
) -> None:
    """Whole frames are kept: a flood of large ones stays within the kind's byte bound, the
    newest kept, on the backend as in the mirror."""
    store = make_store()
    a = store.agent("a")
    body = "x" * 40_000  # 40 kB a frame: the byte bound binds long before the count
    for i in range(200):
        a.add("unread", {f"n{i}": f'{{"id":"n{i}","text":"{body}"}}'})
    mirror = a.members("unread")
    a.flush()
    store.close()
    kept = make_store().agent("a").members("unread")
    assert kept == mirror
    assert 0 < sum(len(v) for v in kept.values()) <= KIND_MAX_BYTES["unread"]
    assert len(kept) < 200 and "n199" in kept and "n0" not in kept
    assert list(kept) == sorted(kept, key=lambda k: int(k[1:]))  # oldest first


def test_writes_are_batched_off_the_callers_thread(tmp_path: Path) -> None:
    """submit never touches the disk: until flush, another connection sees nothing new."""
    store = SqliteStore(tmp_path / "a.db", flush_interval=5.0, batch_size=10_000)
    a = store.agent("a")
    a.add("presented", {f"n{i}": "" for i in range(100)})
    assert a.contains("presented", "n5")  # the mirror answers at once
    store.flush()
    store.close()
    db = sqlite3.connect(tmp_path / "a.db")
    assert db.execute("SELECT COUNT(*) FROM ids").fetchone()[0] == 100
    db.close()


def test_open_store_choices(tmp_path: Path) -> None:
    mem, own = open_store(None)
    assert isinstance(mem, MemoryStore) and own
    path_store, own = open_store(str(tmp_path / "x.db"))
    assert isinstance(path_store, SqliteStore) and own
    # One file, one store per process: a second open shares it instead of locking itself out.
    same, _ = open_store(tmp_path / "x.db")
    assert same is path_store
    same.close()
    path_store.close()
    given = MemoryStore()
    assert open_store(given) == (given, False)
    with pytest.raises(InvalidArgumentError, match="memcached:// URLs are not supported"):
        open_store("memcached://localhost:11211")
    with pytest.raises(InvalidArgumentError, match="file path, a redis:// URL, a StateStore"):
        open_store(42)  # type: ignore[arg-type]


def _expect_error(path: Path, *phrases: str) -> None:
    before = _digest(path) if path.is_file() else None
    with pytest.raises(StateError) as info:
        SqliteStore(path)
    text = str(info.value)
    assert str(path.resolve()) in text
    for phrase in phrases:
        assert phrase in text, text
    if before is not None:
        assert _digest(path) == before, "the file was changed"


def test_garbage_file_is_refused_and_kept(tmp_path: Path) -> None:
    bad = tmp_path / "agent.db"
    bad.write_bytes(b"not a database at all\n" * 500)
    _expect_error(bad, "not a readable SQLite database", "move it away")


def test_corrupt_database_is_refused_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    store = SqliteStore(path)
    store.agent("a").add("acked", {f"n{i}": "x" * 200 for i in range(2000)})
    store.flush()
    store.close()
    data = bytearray(path.read_bytes())
    data[4096 * 3 : 4096 * 3 + 2000] = os.urandom(2000)  # wreck a b-tree page
    path.write_bytes(bytes(data))
    _expect_error(path, "move it away")


def test_another_programs_database_is_refused_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE notes (body TEXT)")
    db.execute("INSERT INTO notes VALUES ('precious')")
    db.commit()
    db.close()
    _expect_error(path, "another program's SQLite database", "choose another path")
    db = sqlite3.connect(path)
    assert db.execute("SELECT body FROM notes").fetchall() == [("precious",)]
    db.close()


def test_newer_schema_is_refused_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    SqliteStore(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    _expect_error(path, f"schema {SCHEMA_VERSION + 1}", "upgrade langchain-moltcities")


def test_file_in_use_by_another_process_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys
                from langchain_moltcities.state import SqliteStore
                store = SqliteStore({str(path)!r})
                print("holding", flush=True)
                sys.stdin.read()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == b"holding"
        _expect_error(path, "in use by another process", "give this one its own state file")
    finally:
        holder.kill()
        holder.wait(timeout=30)
    # Its holder died (even by SIGKILL): the lock went with it.
    SqliteStore(path).close()


def test_empty_file_and_older_schema_are_migrated(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    path.touch()  # an empty file is a database at schema 0
    store = SqliteStore(path)
    store.agent("a").set("k", "v")
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    db.close()


def test_a_schema_1_file_is_migrated_without_losing_anything(tmp_path: Path) -> None:
    """A file written by the previous release (schema 1: no row sizes, no unread kind) opens,
    keeps every value and id in order, and takes the new kind's writes."""
    path = tmp_path / "agent.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE vals (agent TEXT, key TEXT, value TEXT, PRIMARY KEY (agent, key))")
    db.execute(
        "CREATE TABLE ids (agent TEXT, kind TEXT, id TEXT, value TEXT, seq INTEGER, "
        "PRIMARY KEY (agent, kind, id))"
    )
    db.execute("CREATE INDEX ids_by_seq ON ids (agent, kind, seq)")
    db.execute("INSERT INTO vals VALUES ('a', 'chat_cursor', '2026-01-01T00:00:00.000Z')")
    db.execute("INSERT INTO vals VALUES ('', 'key:abc', 'a')")
    rows = [
        ("a", "acked", "n2", "msg_2", 1),
        ("a", "acked", "n1", "msg_1 gb_1", 2),  # seq, not id, is the order
        ("a", "presented", "n1", "n1", 3),
        ("a", "mention_inbox", "m1", '{"type":"notification","id":"m1"}', 4),
        ("b", "handle", "agent_x", "xavier", 5),
    ]
    db.executemany("INSERT INTO ids VALUES (?, ?, ?, ?, ?)", rows)
    db.execute("PRAGMA user_version=1")
    db.execute(f"PRAGMA application_id={APPLICATION_ID}")
    db.commit()
    db.close()

    store = SqliteStore(path)
    a = store.agent("a")
    assert a.get("chat_cursor") == "2026-01-01T00:00:00.000Z"
    assert store.agent("").get("key:abc") == "a"
    assert list(a.members("acked").items()) == [("n2", "msg_2"), ("n1", "msg_1 gb_1")]
    assert a.members("presented") == {"n1": "n1"}
    assert a.members("mention_inbox") == {"m1": '{"type":"notification","id":"m1"}'}
    assert store.agent("b").members("handle") == {"agent_x": "xavier"}
    a.add("unread", {"n3": '{"type":"notification","id":"n3"}'})
    a.add("acked", {"n4": ""})
    a.flush()
    store.close()

    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    sizes = dict(db.execute("SELECT id, size FROM ids WHERE kind = 'acked'").fetchall())
    assert sizes == {"n2": 5, "n1": 10, "n4": 0}
    db.close()
    again = SqliteStore(path).agent("a")
    assert list(again.members("acked")) == ["n2", "n1", "n4"]
    assert list(again.members("unread")) == ["n3"]
    again.store.close()


def test_bad_paths_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="is a directory"):
        SqliteStore(tmp_path)
    with pytest.raises(StateError, match="its folder does not exist"):
        SqliteStore(tmp_path / "missing" / "agent.db")


def test_client_refuses_a_bad_state_file_at_construction(tmp_path: Path) -> None:
    bad = tmp_path / "agent.db"
    bad.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(StateError, match="move it away"):
        MoltCitiesClient(api_key="mc_" + "ab" * 32, base_url="http://127.0.0.1:9", state=bad)
