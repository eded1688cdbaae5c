"""A durable local outbox: events the broker did not take wait here (sqlite, fsync'd) in order.

Every sqlite call runs on one dedicated thread (never on the event loop). Several processes may
share one file. Each process owns one *lane* (an advisory file lock `<outbox>.lane-<n>.lock`, held
for the process's life and released by the kernel when it dies): a lane is one Pulsar producer
name and one persistent, monotonically increasing sequence of ids, so a resend carries the id of the
first send and the broker's deduplication drops it when the first one landed. A process sends only
its own lane's rows, plus the rows of lanes no live process holds (it takes their lock while it
drains them), so no two processes ever use one producer name.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import sqlite3
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

from asgi_guard.core.paths import cache_root

T = TypeVar("T")
MAX_LANES = 1024  # more processes than this on one outbox file is a configuration error

_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    partition_key TEXT,
    properties TEXT NOT NULL,
    payload BLOB NOT NULL,
    created REAL NOT NULL
)""",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS lanes (lane INTEGER PRIMARY KEY, next_seq INTEGER NOT NULL)",
)
# Added to files of earlier versions (their rows have no lane yet: the first lane claimed adopts them).
_COLUMNS = {"lane": "INTEGER", "seq": "INTEGER", "attempted": "INTEGER NOT NULL DEFAULT 0"}


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """One message on its way to a topic.

    `row_id` is set once it sits in the outbox; `lane` and `seq` once the publisher numbered it (the
    Pulsar producer name and sequence id it is always sent with); `attempted` once it may have
    reached the broker (then a broker-side drop of a resend is a real duplicate, not a loss).
    """

    topic: str
    payload: bytes
    partition_key: str | None
    properties: dict[str, str]
    row_id: int | None = None
    lane: int | None = None
    seq: int | None = None
    attempted: bool = False


def default_outbox_path() -> Path:
    return cache_root() / "outbox.sqlite3"


class Outbox:
    """The sqlite outbox; the async methods hop to the outbox thread."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else default_outbox_path()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="asgi-guard-outbox")
        self._conn: sqlite3.Connection | None = None
        self._lane: int | None = None
        self._locks: dict[int, IO[bytes]] = {}  # lane -> its lock file, while held

    # -- thread side ------------------------------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")  # fsync on every commit
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA:
                    conn.execute(statement)
                have = {row[1] for row in conn.execute("PRAGMA table_info(outbox)")}
                for name, kind in _COLUMNS.items():
                    if name not in have:
                        conn.execute(f"ALTER TABLE outbox ADD COLUMN {name} {kind}")
                conn.execute(
                    "CREATE INDEX IF NOT EXISTS outbox_lane_seq ON outbox (lane, seq) WHERE lane IS NOT NULL"
                )
                conn.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('outbox_id', ?)",
                    (uuid.uuid4().hex[:16],),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _lock_path(self, lane: int) -> str:
        return f"{self.path}.lane-{lane}.lock"

    def _try_lock(self, lane: int) -> bool:
        if lane in self._locks:
            return False  # held by this object already (its own lane, or a drain in progress)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self._lock_path(lane), "ab")  # noqa: SIM115 - held while the lane is ours
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._locks[lane] = handle
        return True

    def _unlock(self, lane: int) -> None:
        handle = self._locks.pop(lane, None)
        if handle is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            handle.close()

    def _own_lane(self) -> int:
        """Claim the lowest free lane (stable across restarts: worker N usually gets lane N again)."""
        if self._lane is None:
            db = self._db()
            for lane in range(MAX_LANES):
                if self._try_lock(lane):
                    break
            else:
                raise RuntimeError(f"all {MAX_LANES} lanes of {self.path} are held by live processes")
            self._lane = lane
            self._adopt_legacy(db, lane)
        return self._lane

    def _adopt_legacy(self, db: sqlite3.Connection, lane: int) -> None:
        """Rows from before lanes existed were never numbered, so never sent with a sequence id."""
        with contextlib.closing(db.cursor()) as cur:
            cur.execute("BEGIN IMMEDIATE")
            ids = [r[0] for r in cur.execute("SELECT id FROM outbox WHERE lane IS NULL ORDER BY id")]
            if ids:
                start = self._reserve_in(cur, lane, len(ids), 0)
                cur.executemany(
                    "UPDATE outbox SET lane = ?, seq = ?, attempted = 0 WHERE id = ?",
                    [(lane, start + i, row_id) for i, row_id in enumerate(ids)],
                )
            cur.execute("COMMIT")

    @staticmethod
    def _reserve_in(cur: sqlite3.Cursor, lane: int, count: int, floor: int) -> int:
        row = cur.execute("SELECT next_seq FROM lanes WHERE lane = ?", (lane,)).fetchone()
        start = max(int(row[0]) if row else 0, floor)
        cur.execute(
            "INSERT INTO lanes (lane, next_seq) VALUES (?, ?) "
            "ON CONFLICT (lane) DO UPDATE SET next_seq = excluded.next_seq",
            (lane, start + count),
        )
        return start

    def _reserve(self, lane: int, count: int, floor: int) -> int:
        with contextlib.closing(self._db().cursor()) as cur:
            cur.execute("BEGIN IMMEDIATE")
            start = self._reserve_in(cur, lane, count, floor)
            cur.execute("COMMIT")
        return start

    def _outbox_id(self) -> str:
        return str(self._db().execute("SELECT value FROM meta WHERE key = 'outbox_id'").fetchone()[0])

    def _append(self, events: list[OutboxEvent]) -> None:
        db = self._db()
        now = time.time()
        with contextlib.closing(db.cursor()) as cur:
            cur.execute("BEGIN IMMEDIATE")
            cur.executemany(
                "INSERT INTO outbox (topic, partition_key, properties, payload, created, lane, seq,"
                " attempted) VALUES (?,?,?,?,?,?,?,?)",
                [
                    (
                        e.topic,
                        e.partition_key,
                        json.dumps(e.properties),
                        e.payload,
                        now,
                        e.lane,
                        e.seq,
                        int(e.attempted),
                    )
                    for e in events
                ],
            )
            cur.execute("COMMIT")

    def _peek(self, limit: int, lane: int | None) -> list[OutboxEvent]:
        if lane is None:
            query = (
                "SELECT id, topic, partition_key, properties, payload, lane, seq, attempted "
                "FROM outbox ORDER BY id LIMIT ?"
            )
            args: tuple[Any, ...] = (limit,)
        else:
            query = (
                "SELECT id, topic, partition_key, properties, payload, lane, seq, attempted "
                "FROM outbox WHERE lane = ? ORDER BY seq, id LIMIT ?"
            )
            args = (lane, limit)
        rows = self._db().execute(query, args).fetchall()
        return [
            OutboxEvent(r[1], bytes(r[4]), r[2], json.loads(r[3]), r[0], r[5], r[6], bool(r[7])) for r in rows
        ]

    def _delete(self, row_ids: list[int]) -> None:
        self._db().executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in row_ids])

    def _update(self, events: list[OutboxEvent]) -> None:
        """Write back the numbering of rows (a new sequence id, the `attempted` mark) in one commit."""
        with contextlib.closing(self._db().cursor()) as cur:
            cur.execute("BEGIN IMMEDIATE")
            cur.executemany(
                "UPDATE outbox SET lane = ?, seq = ?, attempted = ? WHERE id = ?",
                [(e.lane, e.seq, int(e.attempted), e.row_id) for e in events if e.row_id is not None],
            )
            cur.execute("COMMIT")

    def _stats(self, lane: int | None) -> tuple[int, float, int]:
        count, oldest = self._db().execute("SELECT COUNT(*), MIN(created) FROM outbox").fetchone()
        mine = 0
        if lane is not None:
            mine = self._db().execute("SELECT COUNT(*) FROM outbox WHERE lane = ?", (lane,)).fetchone()[0]
        return int(count), (time.time() - oldest) if oldest is not None else 0.0, int(mine)

    def _lanes_with_rows(self) -> list[int]:
        rows = self._db().execute("SELECT DISTINCT lane FROM outbox WHERE lane IS NOT NULL").fetchall()
        return sorted(int(r[0]) for r in rows)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        for lane in list(self._locks):
            self._unlock(lane)
        self._lane = None

    # -- loop side --------------------------------------------------------------------------------
    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def lane(self) -> int:
        """This object's own lane (claimed on first use, held until `close`)."""
        return await self._run(self._own_lane)

    async def outbox_id(self) -> str:
        """A random id made once per outbox file: with the lane, it names the Pulsar producer."""
        return await self._run(self._outbox_id)

    async def reserve(self, lane: int, count: int, floor: int = 0) -> int:
        """Reserve `count` sequence ids of `lane` (persisted before they are used); returns the first.
        `floor` lifts the sequence to at least that value (the broker knows a higher id)."""
        return await self._run(self._reserve, lane, count, floor)

    async def append(self, events: list[OutboxEvent]) -> None:
        if events:
            await self._run(self._append, events)

    async def peek(self, limit: int = 100, lane: int | None = None) -> list[OutboxEvent]:
        """The oldest rows (all lanes, by insertion), or one lane's rows in sequence order."""
        return await self._run(self._peek, limit, lane)

    async def delete(self, row_ids: list[int]) -> None:
        if row_ids:
            await self._run(self._delete, row_ids)

    async def update(self, events: list[OutboxEvent]) -> None:
        if any(e.row_id is not None for e in events):
            await self._run(self._update, events)

    async def stats(self) -> tuple[int, float]:
        """(number of waiting events, age in seconds of the oldest)."""
        count, age, _ = await self._run(self._stats, None)
        return count, age

    async def lane_stats(self, lane: int) -> tuple[int, float, int]:
        """(waiting events, age of the oldest, waiting events of `lane`)."""
        return await self._run(self._stats, lane)

    async def lanes_with_rows(self) -> list[int]:
        return await self._run(self._lanes_with_rows)

    async def try_lock(self, lane: int) -> bool:
        """Take another lane's lock if no live process holds it (to drain its rows)."""
        return await self._run(self._try_lock, lane)

    async def unlock(self, lane: int) -> None:
        await self._run(self._unlock, lane)

    async def close(self) -> None:
        await self._run(self._close)
        self._executor.shutdown(wait=False)
