"""The outbox's lanes and sequence ids (no broker): one lane per live holder, ids never reused."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from asgi_guard.stages.events.outbox import Outbox, OutboxEvent


async def test_each_holder_gets_its_own_lane_and_a_restart_gets_it_back(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    first, second = Outbox(path), Outbox(path)
    try:
        assert (await first.lane(), await second.lane()) == (0, 1)
        assert await first.outbox_id() == await second.outbox_id()
        assert not await second.try_lock(0)  # held by a live holder: nobody else may drain it
        await first.close()
        again = Outbox(path)
        assert await again.lane() == 0  # the lowest free lane: a restarted worker takes its old one
        await again.close()
    finally:
        await second.close()


async def test_sequence_ids_are_reserved_persistently_and_never_reused(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    outbox = Outbox(path)
    lane = await outbox.lane()
    assert await outbox.reserve(lane, 10) == 0
    assert await outbox.reserve(lane, 5) == 10
    assert await outbox.reserve(lane, 1, floor=100) == 100  # the broker knows 99: jump over it
    await outbox.close()
    reopened = Outbox(path)
    assert await reopened.reserve(await reopened.lane(), 1) == 101
    assert await reopened.reserve(1, 3) == 0  # lanes count separately
    await reopened.close()


async def test_rows_keep_lane_seq_and_attempted_in_sequence_order(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db")
    lane = await outbox.lane()
    rows = [
        OutboxEvent("t", b"%d" % s, None, {"k": "v"}, lane=lane, seq=s, attempted=s == 7) for s in (7, 3, 5)
    ]
    await outbox.append(rows)
    peeked = await outbox.peek(10, lane)
    assert [(e.seq, e.attempted, e.payload) for e in peeked] == [
        (3, False, b"3"),
        (5, False, b"5"),
        (7, True, b"7"),
    ]
    count, age, mine = await outbox.lane_stats(lane)
    assert (count, mine) == (3, 3) and 0 <= age < 60
    await outbox.update(
        [OutboxEvent("t", b"", None, {}, row_id=peeked[0].row_id, lane=lane, seq=9, attempted=True)]
    )
    assert [e.seq for e in await outbox.peek(10, lane)] == [5, 7, 9]
    assert await outbox.lanes_with_rows() == [lane]
    await outbox.close()


async def test_a_file_from_before_lanes_is_adopted_in_order(tmp_path: Path) -> None:
    """Rows written by an earlier version have no lane: the first holder numbers them, oldest first."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, "
            "partition_key TEXT, properties TEXT NOT NULL, payload BLOB NOT NULL, created REAL NOT NULL)"
        )
        db.executemany(
            "INSERT INTO outbox (topic, partition_key, properties, payload, created) VALUES (?,?,?,?,?)",
            [("t", None, json.dumps({}), b"old%d" % i, 0.0) for i in range(3)],
        )
    outbox = Outbox(path)
    lane = await outbox.lane()
    rows = await outbox.peek(10, lane)
    assert [(r.payload, r.seq, r.attempted) for r in rows] == [
        (b"old0", 0, False),
        (b"old1", 1, False),
        (b"old2", 2, False),
    ]
    assert await outbox.reserve(lane, 1) == 3
    await outbox.close()
