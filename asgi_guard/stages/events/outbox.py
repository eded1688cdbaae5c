"""A durable local outbox: events the broker did not take wait here (sqlite, fsync'd) in order.

Every sqlite call runs on one dedicated thread (never on the event loop). Several processes may
share one file: appends are plain transactions; only the holder of an advisory file lock drains, so
no two processes send the same row.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

from asgi_guard.core.paths import cache_root

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    partition_key TEXT,
    properties TEXT NOT NULL,
    payload BLOB NOT NULL,
    created REAL NOT NULL
)
"""


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """One message on its way to a topic (`row_id` is set once it sits in the outbox)."""

    topic: str
    payload: bytes
    partition_key: str | None
    properties: dict[str, str]
    row_id: int | None = None


def default_outbox_path() -> Path:
    return cache_root() / "outbox.sqlite3"


class Outbox:
    """The sqlite outbox; the async methods hop to the outbox thread."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else default_outbox_path()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="asgi-guard-outbox")
        self._conn: sqlite3.Connection | None = None
        self._lock_file: IO[bytes] | None = None

    # -- thread side ------------------------------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")  # fsync on every commit
            conn.execute(_SCHEMA)
            self._conn = conn
        return self._conn

    def _append(self, events: list[OutboxEvent]) -> None:
        db = self._db()
        now = time.time()
        with contextlib.closing(db.cursor()) as cur:
            cur.execute("BEGIN IMMEDIATE")
            cur.executemany(
                "INSERT INTO outbox (topic, partition_key, properties, payload, created) VALUES (?,?,?,?,?)",
                [(e.topic, e.partition_key, json.dumps(e.properties), e.payload, now) for e in events],
            )
            cur.execute("COMMIT")

    def _peek(self, limit: int) -> list[OutboxEvent]:
        rows = (
            self._db()
            .execute(
                "SELECT id, topic, partition_key, properties, payload FROM outbox ORDER BY id LIMIT ?",
                (limit,),
            )
            .fetchall()
        )
        return [OutboxEvent(r[1], bytes(r[4]), r[2], json.loads(r[3]), r[0]) for r in rows]

    def _delete(self, row_ids: list[int]) -> None:
        self._db().executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in row_ids])

    def _stats(self) -> tuple[int, float]:
        count, oldest = self._db().execute("SELECT COUNT(*), MIN(created) FROM outbox").fetchone()
        return int(count), (time.time() - oldest) if oldest is not None else 0.0

    def _try_lock(self) -> bool:
        if self._lock_file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_file = open(str(self.path) + ".drain.lock", "ab")  # noqa: SIM115 - held for life
        try:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        return True

    def _unlock(self) -> None:
        if self._lock_file is not None:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    # -- loop side --------------------------------------------------------------------------------
    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def append(self, events: list[OutboxEvent]) -> None:
        if events:
            await self._run(self._append, events)

    async def peek(self, limit: int = 100) -> list[OutboxEvent]:
        return await self._run(self._peek, limit)

    async def delete(self, row_ids: list[int]) -> None:
        if row_ids:
            await self._run(self._delete, row_ids)

    async def stats(self) -> tuple[int, float]:
        """(number of waiting events, age in seconds of the oldest)."""
        return await self._run(self._stats)

    async def try_lock(self) -> bool:
        """Take the drain lock if no other process holds it."""
        return await self._run(self._try_lock)

    async def unlock(self) -> None:
        await self._run(self._unlock)

    async def close(self) -> None:
        await self._run(self._close)
        self._executor.shutdown(wait=False)
