"""The SQLite store: one file, WAL, written behind by a worker thread in batches.

Writes are queued without I/O and committed together every ``flush_interval`` seconds or
``batch_size`` writes, so the receive path never waits for the disk; a crash loses at most
the last batch, which the client's rules turn into a re-delivery, never a loss.

The file is held with an exclusive lock while open: two processes on one file would each
overwrite the other's cursor. Anything wrong with the file (not SQLite, corrupt, another
application's, a newer schema, in use) is a :class:`StateError` that names the file and what
to do; the file itself is never changed or removed by that check.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from langchain_moltcities.state.base import (
    KIND_CAPACITY,
    KIND_MAX_BYTES,
    AgentSnapshot,
    StateError,
    value_size,
)
from langchain_moltcities.state.writer import Batch, BatchWriter, WrittenBehind

__all__ = ["SCHEMA_VERSION", "SqliteStore"]

_log = logging.getLogger("langchain_moltcities.state")

# PRAGMA application_id of our files ("MCst"): tells our file from another program's database.
APPLICATION_ID = 0x4D437374
SCHEMA_VERSION = 2


def _v1(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE vals (agent TEXT, key TEXT, value TEXT, PRIMARY KEY (agent, key))")
    db.execute(
        "CREATE TABLE ids (agent TEXT, kind TEXT, id TEXT, value TEXT, seq INTEGER, "
        "PRIMARY KEY (agent, kind, id))"
    )
    db.execute("CREATE INDEX ids_by_seq ON ids (agent, kind, seq)")


def _v2(db: sqlite3.Connection) -> None:
    # Schema 2 keeps whole notifications (delivered, not yet acked): each row's size in bytes,
    # so the file itself holds a kind within its byte bound (KIND_MAX_BYTES), not only the
    # in-memory mirror. Rows of schema 1 get their size now; nothing is dropped.
    db.execute("ALTER TABLE ids ADD COLUMN size INTEGER NOT NULL DEFAULT 0")
    db.execute("UPDATE ids SET size = length(CAST(value AS BLOB)) WHERE value IS NOT NULL")


# MIGRATIONS[n] takes a file at schema n to n + 1, inside one transaction. A new schema
# appends a step here (and bumps SCHEMA_VERSION); older files are brought up on open.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_v1, _v2]
assert len(MIGRATIONS) == SCHEMA_VERSION

_OPEN_LOCK = threading.Lock()
_OPEN: dict[str, SqliteStore] = {}


class SqliteStore(WrittenBehind):
    """Agents' state in one SQLite file. Use :meth:`open` to share one per path per process."""

    _what = "state file"

    def __init__(
        self, path: str | os.PathLike[str], *, flush_interval: float = 0.05, batch_size: int = 500
    ) -> None:
        self.path = Path(path).expanduser().resolve()
        self.location = str(self.path)
        self.flush_interval, self.batch_size = flush_interval, batch_size
        self._db = self._connect()
        self._db_lock = threading.Lock()
        self._seq = self._max_seq()
        self._error: BaseException | None = None
        self._closed = False
        self._users = 0
        self._writer = BatchWriter(
            self._write,
            name="moltcities-state",
            flush_interval=flush_interval,
            batch_size=batch_size,
        )

    @classmethod
    def open(cls, path: str | os.PathLike[str], **kwargs: float | int) -> SqliteStore:
        """The store of ``path`` in this process, opened on first use (then shared)."""
        key = str(Path(path).expanduser().resolve())
        with _OPEN_LOCK:
            store = _OPEN.get(key)
            if store is None or store._closed:
                store = cls(key, **kwargs)  # type: ignore[arg-type]
                _OPEN[key] = store
            store._users += 1
            return store

    def __repr__(self) -> str:
        return f"SqliteStore({self.location!r})"

    # ------------------------------------------------------------------ opening

    def _fail(self, what: str, todo: str) -> StateError:
        return StateError(
            f"state file {self.location}: {what}; {todo}. The file was left as it is."
        )

    def _connect(self) -> sqlite3.Connection:
        if self.path.is_dir():
            raise self._fail("is a directory", "give the path of a file (it is created if missing)")
        if not self.path.parent.is_dir():
            raise self._fail(
                "its folder does not exist", "create the folder or choose another path"
            )
        try:
            db = sqlite3.connect(
                self.path, timeout=0.5, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise self._fail(f"cannot be opened ({exc})", "check its permissions") from None
        try:
            self._check_and_migrate(db)
        except BaseException:
            db.close()
            raise
        return db

    def _check_and_migrate(self, db: sqlite3.Connection) -> None:
        try:
            # Exclusive: the lock is taken by the first write below and held until close, so a
            # second process gets "locked" at once instead of two writers taking turns.
            db.execute("PRAGMA locking_mode=EXCLUSIVE")
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise self._fail(
                    "is in use by another process (locked)",
                    "stop the other agent that uses it, or give this one its own state file",
                ) from None
            raise self._fail(f"cannot be read ({exc})", "check the file") from None
        except sqlite3.DatabaseError as exc:
            raise self._not_ours(exc) from None
        try:
            try:
                app_id = db.execute("PRAGMA application_id").fetchone()[0]
                version = db.execute("PRAGMA user_version").fetchone()[0]
                tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
            except sqlite3.DatabaseError as exc:
                raise self._not_ours(exc) from None
            if app_id != APPLICATION_ID and (app_id != 0 or tables):
                raise self._fail(
                    "is another program's SQLite database, not a langchain-moltcities state file",
                    "choose another path for the agent's state",
                )
            if version > SCHEMA_VERSION:
                raise self._fail(
                    f"was written by a newer langchain-moltcities (schema {version}; this "
                    f"version reads up to {SCHEMA_VERSION})",
                    "upgrade langchain-moltcities, or use another state file",
                )
            if tables:
                check = db.execute("PRAGMA quick_check").fetchone()[0]
                if check != "ok":
                    raise self._fail(
                        f"is corrupt ({check})",
                        "move it away (keep it for inspection) and start with a new state file",
                    )
            for step in range(version, SCHEMA_VERSION):
                MIGRATIONS[step](db)
            if version < SCHEMA_VERSION:
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            db.execute("ROLLBACK")
            raise self._not_ours(exc) from None
        except BaseException:
            db.execute("ROLLBACK")
            raise
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.DatabaseError as exc:
            raise self._not_ours(exc) from None

    def _not_ours(self, exc: sqlite3.DatabaseError) -> StateError:
        return self._fail(
            f"is not a readable SQLite database ({exc}): corrupt, or not a state file",
            "move it away (keep it for inspection) and start with a new state file",
        )

    def _max_seq(self) -> int:
        return int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM ids").fetchone()[0])

    # ------------------------------------------------------------------ the interface

    def load(self, agent_id: str) -> AgentSnapshot:
        """What is stored for ``agent_id``."""
        snap = AgentSnapshot()
        with self._db_lock:
            for key, value in self._db.execute(
                "SELECT key, value FROM vals WHERE agent = ?", (agent_id,)
            ):
                snap.values[key] = value
            for kind, item_id, value in self._db.execute(
                "SELECT kind, id, value FROM ids WHERE agent = ? ORDER BY seq", (agent_id,)
            ):
                if kind in KIND_CAPACITY:  # a kind a later version added: left alone
                    snap.sets.setdefault(kind, {})[item_id] = value
        return snap

    def close(self) -> None:
        """Flush, stop the writer and release the file (once the last user closes it)."""
        with _OPEN_LOCK:
            self._users -= 1
            if self._users > 0 or self._closed:
                return
            self._closed = True
            if _OPEN.get(self.location) is self:
                del _OPEN[self.location]
        self._writer.stop()
        with self._db_lock:
            self._db.close()

    # ------------------------------------------------------------------ the writer

    def _write(self, batch: Batch) -> BaseException | None:
        if not batch:
            return None
        # Runs of like writes, in order, each one executemany (a flood of notifications is
        # one run of inserts, not a thousand statements).
        runs: list[tuple[str, list[tuple[Any, ...]]]] = []
        touched: set[tuple[str, str]] = set()
        seq = self._seq
        for agent, ops in batch:
            for op in ops:
                row: tuple[Any, ...]
                if op[0] == "set":
                    sql, row = (
                        (_DEL_VAL, (agent, op[1]))
                        if op[2] is None
                        else (_SET_VAL, (agent, op[1], op[2]))
                    )
                elif op[0] == "add" and len(op) == 4:
                    seq += 1
                    value = op[3] or ""
                    sql, row = _ADD, (agent, op[1], op[2], value, seq, value_size(value))
                    touched.add((agent, op[1]))
                elif op[0] == "discard":
                    sql, row = _DISCARD, (agent, op[1], op[2])
                else:
                    continue
                if runs and runs[-1][0] is sql:
                    runs[-1][1].append(row)
                else:
                    runs.append((sql, [row]))
        try:
            with self._db_lock:
                db = self._db
                db.execute("BEGIN")
                try:
                    for sql, rows in runs:
                        db.executemany(sql, rows)
                    for agent, kind in touched:
                        db.execute(
                            "DELETE FROM ids WHERE agent = ? AND kind = ? AND seq <= ("
                            "SELECT seq FROM ids WHERE agent = ? AND kind = ? "
                            "ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                            (agent, kind, agent, kind, KIND_CAPACITY.get(kind, 10_000)),
                        )
                        if (max_bytes := KIND_MAX_BYTES.get(kind)) is not None:
                            db.execute(_TRIM_BYTES, (agent, kind, agent, kind, max_bytes))
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            if self._error is None:
                _log.error(
                    "state file %s: writing failed (%s); state is not saved", self.location, exc
                )
            self._error = exc
            return exc
        self._seq, self._error = seq, None
        return None


_SET_VAL = "INSERT OR REPLACE INTO vals VALUES (?, ?, ?)"
_DEL_VAL = "DELETE FROM vals WHERE agent = ? AND key = ?"
_ADD = "INSERT OR REPLACE INTO ids VALUES (?, ?, ?, ?, ?, ?)"
_DISCARD = "DELETE FROM ids WHERE agent = ? AND kind = ? AND id = ?"

# Drop a kind's oldest rows until the newest ones fit its byte bound (the mirror sends the
# same drops; this keeps the file within the bound whatever it is sent).
_TRIM_BYTES = (
    "DELETE FROM ids WHERE agent = ? AND kind = ? AND seq <= ("
    "SELECT seq FROM (SELECT seq, SUM(size) OVER (ORDER BY seq DESC) AS total "
    "FROM ids WHERE agent = ? AND kind = ?) WHERE total > ? ORDER BY seq DESC LIMIT 1)"
)
