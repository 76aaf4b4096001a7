"""CSV export in append mode: only new rows, header once, a crash between append and state undone."""

from __future__ import annotations

import csv
import json
import random
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from coordinator.storage.db import init_db
from coordinator.storage.export import STATE_FILE, export_csv
from coordinator.storage.journal import Journal
from coordinator.tests.storage_support import STEP, T0, simulated_beat, trade, trained_ensemble
from xylen.errors import UsageError, XylenError


def read(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def log_beats(conn: sqlite3.Connection, start: int, n: int) -> None:
    ens = trained_ensemble(n=60)
    journal = Journal(conn, ens.params)
    rng = random.Random(start)
    for i in range(start, start + n):
        snap, preds, market = simulated_beat(rng, i, T0 + i * STEP)
        journal.log_beat(snap, preds, ens.decide([p.vote for p in preds], market))
        journal.log_trade(trade(f"i-{i}", T0 + i * STEP))
        journal.log_equity(T0 + i * STEP, Decimal("10000") + i, Decimal(i))


def test_append_twice_no_duplicates_header_once(tmp_path: Path) -> None:
    conn = init_db(tmp_path / "xylen.db")
    out = tmp_path / "csv"
    log_beats(conn, 0, 4)
    first = {r.table: r.rows for r in export_csv(conn, out)}
    assert first["decisions"] == 4 and first["trades"] == 4 and first["orders"] == 0
    log_beats(conn, 4, 3)
    second = {r.table: r.rows for r in export_csv(conn, out, ["decisions", "trades", "equity"])}
    assert second == {"decisions": 3, "trades": 3, "equity": 3}
    assert {r.table: r.rows for r in export_csv(conn, out, ["decisions"])} == {"decisions": 0}
    for table in ("decisions", "trades", "equity"):
        rows = read(out / f"{table}.csv")
        header = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
        assert rows[0] == header and header not in rows[1:]
        assert len(rows) == 1 + 7
        assert len({tuple(r) for r in rows[1:]}) == 7
    assert [r[0] for r in read(out / "trades.csv")[1:]] == [str(i) for i in range(1, 8)]
    decisions = read(out / "decisions.csv")
    db_rows = conn.execute("SELECT beat_id, probability FROM decisions ORDER BY rowid").fetchall()
    assert [(r[0], float(r[4])) for r in decisions[1:]] == db_rows  # floats round-trip exactly
    assert read(out / "snapshots.csv")[1:] and len(read(out / "snapshots.csv")) == 1 + 4  # not asked again
    state = json.loads((out / STATE_FILE).read_text())
    assert state["decisions"]["last_rowid"] == 7


def test_an_unrecorded_append_is_cut_back(tmp_path: Path) -> None:
    conn = init_db(tmp_path / "xylen.db")
    out = tmp_path / "csv"
    log_beats(conn, 0, 2)
    export_csv(conn, out, ["equity"])
    with open(out / "equity.csv", "a", encoding="utf-8") as handle:  # a run that died before its state
        handle.write("999,torn")
    log_beats(conn, 2, 1)
    assert [r.rows for r in export_csv(conn, out, ["equity"])] == [1]
    rows = read(out / "equity.csv")
    assert len(rows) == 4 and ["999", "torn"] not in rows


def test_refusals(tmp_path: Path) -> None:
    conn = init_db(tmp_path / "xylen.db")
    out = tmp_path / "csv"
    with pytest.raises(UsageError, match="no such table: nope"):
        export_csv(conn, out, ["nope"])
    out.mkdir()
    (out / "equity.csv").write_text("someone else's file\n")
    with pytest.raises(XylenError, match="not in"):
        export_csv(conn, out, ["equity"])
    assert (out / "equity.csv").read_text() == "someone else's file\n"
