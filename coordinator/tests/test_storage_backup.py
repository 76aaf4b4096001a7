"""Online backup under a concurrent writer, rotation, restore and its refusals, the daily schedule."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from coordinator.storage.backup import (
    BackupError,
    DailyBackup,
    backup,
    backup_time_ms,
    check_database,
    due,
    list_backups,
    restore,
)
from coordinator.storage.db import init_db, latest_version

T0 = 1_717_200_000_000  # 2024-06-01 00:00:00 UTC
HOUR = 3_600_000
DAY = 24 * HOUR


def make_db(path: Path, rows: int = 0) -> None:
    conn = init_db(path)
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO risk_events (ts_ms, kind, detail, actor) VALUES (?, 'k', ?, 'test')",
        [(i, "x" * 200) for i in range(rows)],
    )
    conn.execute("COMMIT")
    conn.close()


def events(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT count(*) FROM risk_events").fetchone()[0])
    finally:
        conn.close()


def test_backup_while_a_writer_writes(tmp_path: Path) -> None:
    db = tmp_path / "xylen.db"
    make_db(db, rows=20_000)
    stop = threading.Event()
    written = threading.Semaphore(0)

    def writer() -> None:
        conn = init_db(db, synchronous="NORMAL")
        i = 0
        while not stop.is_set():
            conn.execute(
                "INSERT INTO risk_events (ts_ms, kind, detail, actor) VALUES (?, 'w', 'w', 'w')", (i,)
            )
            i += 1
            written.release()
        conn.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(50):
            assert written.acquire(timeout=10)
        before = events(db)
        path = backup(db, tmp_path / "backups", keep=3, now_ms=T0)
        after = events(db)
        for _ in range(50):  # the writer went on writing after the backup
            assert written.acquire(timeout=10)
    finally:
        stop.set()
        thread.join()
    assert path.name == "xylen-20240601T000000Z.db"
    assert check_database(path) == latest_version()
    assert before <= events(path) <= after
    assert not list((tmp_path / "backups").glob(".tmp-*"))
    assert not path.with_name(path.name + "-wal").exists()  # a standalone file


def test_rotation_keeps_the_newest(tmp_path: Path) -> None:
    db = tmp_path / "xylen.db"
    make_db(db, rows=3)
    made = [backup(db, tmp_path / "b", keep=3, now_ms=T0 + k * HOUR) for k in range(5)]
    again = backup(db, tmp_path / "b", keep=3, now_ms=T0 + 4 * HOUR)  # same second: a -2 suffix
    assert again.name == "xylen-20240601T040000Z-2.db"
    assert list_backups(tmp_path / "b") == [made[3], made[4], again]
    assert backup_time_ms(again) == T0 + 4 * HOUR
    with pytest.raises(BackupError, match="no database"):
        backup(tmp_path / "missing.db", tmp_path / "b")


def test_restore_refuses_garbage_and_truncated_files(tmp_path: Path) -> None:
    db = tmp_path / "home" / "xylen.db"
    make_db(db, rows=500)
    good = backup(db, tmp_path / "b", keep=2, now_ms=T0)
    live_bytes = db.read_bytes()

    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database at all" * 100)
    truncated = tmp_path / "truncated.db"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    cut_page = tmp_path / "cut.db"
    data = good.read_bytes()
    cut_page.write_bytes(data[: len(data) - 4096])
    damaged = tmp_path / "damaged.db"
    raw = bytearray(data)
    raw[len(raw) // 2 : len(raw) // 2 + 3000] = b"\xff" * 3000  # whole size, broken pages
    damaged.write_bytes(bytes(raw))
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    for bad, message in [
        (garbage, "not a SQLite database"),
        (truncated, "truncated"),
        (cut_page, "truncated"),
        (damaged, "integrity|malformed|not a usable"),
        (empty, "not a SQLite database"),
        (tmp_path / "missing.db", "cannot read"),
    ]:
        with pytest.raises(BackupError, match=message):
            restore(bad, db, now_ms=T0)
        assert db.read_bytes() == live_bytes, bad.name
        assert not list(db.parent.glob("*before-restore*"))
        assert not list(db.parent.glob(".tmp-*"))


def test_restore_refuses_a_newer_schema(tmp_path: Path) -> None:
    newer = tmp_path / "newer.db"
    conn = sqlite3.connect(newer)
    conn.execute(f"PRAGMA user_version = {latest_version() + 1}")
    conn.close()
    with pytest.raises(BackupError, match="newer than this code"):
        check_database(newer)


def test_restore_replaces_the_database_and_keeps_the_old_aside(tmp_path: Path) -> None:
    db = tmp_path / "home" / "xylen.db"
    make_db(db, rows=10)
    good = backup(db, tmp_path / "b", keep=2, now_ms=T0)
    conn = init_db(db)
    conn.execute("INSERT INTO risk_events (ts_ms, kind, detail, actor) VALUES (1, 'later', 'd', 'a')")
    conn.close()
    assert events(db) == 11
    aside = restore(good, db, now_ms=T0 + HOUR)
    assert aside is not None and aside.name == "xylen.db.before-restore-20240601T010000Z"
    assert events(db) == 10 and events(aside) == 11
    conn = init_db(db)  # opens, in WAL mode again, at the latest version
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    fresh = tmp_path / "other" / "xylen.db"
    assert restore(good, fresh) is None and events(fresh) == 10


def test_restore_refuses_while_another_connection_writes(tmp_path: Path) -> None:
    db = tmp_path / "xylen.db"
    make_db(db, rows=1)
    good = backup(db, tmp_path / "b", now_ms=T0)
    holder = init_db(db)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(BackupError, match="in use"):
            restore(good, db)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert events(db) == 1 and not list(tmp_path.glob("*before-restore*"))


def test_due() -> None:
    at_2 = T0 + 2 * HOUR
    assert due(at_2, None, 1)
    assert due(at_2, T0 + HOUR - 1, 1)  # last one before today's 01:00
    assert not due(at_2, T0 + HOUR, 1)
    assert not due(T0 + 30 * 60_000, T0 - DAY + 2 * HOUR, 1)  # 00:30: yesterday's 01:00 is the latest
    assert due(T0 + 30 * 60_000, T0 - DAY + HOUR - 5, 1)
    assert due(T0 + DAY + HOUR, T0 + HOUR, 1)  # a day later
    with pytest.raises(ValueError):
        due(T0, None, 24)


def test_run_daily_backs_up_once_a_day_and_survives_failures(tmp_path: Path) -> None:
    db = tmp_path / "xylen.db"
    clock = [T0 + 30 * 60_000]
    sleeps: list[float] = []
    daily = DailyBackup(db, tmp_path / "b", keep=5, hour_utc=1, check_interval_s=60, max_backoff_s=240)

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 3:  # the database appears: backups start working
            make_db(db, rows=2)
        clock[0] += HOUR
        if len(sleeps) >= 8:
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(daily.run_daily(now_ms=lambda: clock[0], sleep=fake_sleep))
    # 00:30 no backup yet due? None -> due, but no database: failures back off 120, 240, 240
    assert sleeps[:3] == [120.0, 240.0, 240.0]
    assert sleeps[3:] == [60.0] * 5
    names = [p.name for p in list_backups(tmp_path / "b")]
    assert names == ["xylen-20240601T033000Z.db"]  # one backup; the next is due tomorrow at 01:00
