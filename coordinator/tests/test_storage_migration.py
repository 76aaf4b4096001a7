"""Migration to the data logger's schema: a database at the previous version keeps every row."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from coordinator.storage.db import MIGRATIONS_DIR, init_db, latest_version, migrate

PREVIOUS = 4
NEW_TABLES = {"snapshots", "model_predictions", "decisions", "outcomes", "trades", "equity"}


def previous_version_db(tmp_path: Path) -> Path:
    """A WAL database built with migrations 1..4 only, with rows in their tables."""
    old = tmp_path / "migrations_v1"
    old.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql"))[:PREVIOUS]:
        shutil.copy(path, old / path.name)
    db = tmp_path / "xylen.db"
    conn = init_db(db, migrations=old)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == PREVIOUS
    conn.executescript(
        """
        BEGIN;
        INSERT INTO intents VALUES ('i1', 'BTCUSDT', 'BUY', '0.010', '41000', '43000', 'OPEN', 1, 2);
        INSERT INTO orders (client_order_id, intent_id, kind, attempt, symbol, side, type, qty,
            reduce_only, close_position, created_ms, state, executed_qty, venue_executed_qty,
            not_found_count, updated_ms)
            VALUES ('x-i1-e-1', 'i1', 'entry', 1, 'BTCUSDT', 'BUY', 'MARKET', '0.010', 0, 0, 1,
            'FILLED', '0.010', '0.010', 0, 3);
        INSERT INTO order_events (client_order_id, event_type, kind, source, event, state_before,
            state_after, applied, duplicate, event_ms, recorded_ms)
            VALUES ('x-i1-e-1', 'fill', 'FILL', 'rest', '{"a": 1}', 'NEW', 'FILLED', 1, 0, 2, 3);
        INSERT INTO fills VALUES ('BTCUSDT', 77, 'x-i1-e-1', '123', '0.010', '42000.5', '0.21', 'USDT',
            '0', 0, 2, 'rest', 1);
        INSERT INTO reconciliation_runs (started_ms, finished_ms, differences, summary) VALUES (5, 6, 1, 's');
        INSERT INTO reconciliation_report (run_id, kind, detail, resolution, recorded_ms)
            VALUES (1, 'unknown_ours', 'd', 'reported', 6);
        INSERT INTO ensemble_outcomes (model_id, outcome_ms, decision_ms, prob_raw, prob_calibrated, label)
            VALUES ('a', 10, 5, 0.61, 0.58, 1);
        INSERT INTO ensemble_models VALUES ('a', 1.0, 0.25, 10, 6, 6.5, 2.25, 10, NULL, NULL, 10);
        INSERT INTO risk_events (ts_ms, kind, detail, actor) VALUES (7, 'halt', 'drill', 'bob');
        UPDATE risk_state SET halted = 1, halted_reason = 'drill', equity = '10000.5' WHERE id = 1;
        COMMIT;
        """
    )
    conn.close()
    return db


def dump(conn: sqlite3.Connection) -> dict[str, list[tuple[object, ...]]]:
    tables = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
        )
    ]
    return {t: conn.execute(f'SELECT * FROM "{t}" ORDER BY rowid').fetchall() for t in tables}


def test_previous_version_migrates_without_losing_rows(tmp_path: Path) -> None:
    db = previous_version_db(tmp_path)
    conn = sqlite3.connect(db)
    before = dump(conn)
    conn.close()
    assert sum(len(rows) for rows in before.values()) >= 10

    conn = init_db(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == latest_version() > PREVIOUS
    after = dump(conn)
    for table, rows in before.items():
        assert after[table] == rows, table  # same counts, same values
    assert set(after) >= NEW_TABLES
    assert all(after[t] == [] for t in NEW_TABLES)
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {
        "decisions_ts",
        "snapshots_ts",
        "trades_exit",
        "outcomes_ts",
        "model_predictions_status",
    } <= indexes
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    assert migrate(conn) == 0  # re-running is a no-op
    assert dump(conn) == after
    conn.close()
    conn = init_db(db)
    assert dump(conn) == after
    conn.close()


def test_fresh_database_reaches_the_latest_version(tmp_path: Path) -> None:
    conn = init_db(tmp_path / "fresh.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == latest_version()
    assert set(dump(conn)) >= NEW_TABLES
    conn.close()
