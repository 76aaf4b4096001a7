"""``export_csv``: append the database's tables to CSV files, one file per table.

Each run appends only the rows whose ``rowid`` is above the last one exported (for tables with an
``INTEGER PRIMARY KEY`` that is the key itself), and writes the header once, when the file is
created.  Progress lives in ``<out>/.export-state.json``: per table the last rowid, the file's size
after the append and the columns.  Rows are appended, flushed and fsynced before the state is
replaced atomically, and a file found longer than the state records (a run that died between the
two) is cut back to the recorded size first, so a crash never duplicates or loses rows.

This is an append log: a row changed in place after it was exported (an order's state, say) is not
exported again; ``order_events`` holds every change of an order.  ``NULL`` is written as an empty
field; floats use Python's shortest round-trip form.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from xylen.errors import UsageError, XylenError
from xylen.fileio import atomic_write_bytes

logger = logging.getLogger(__name__)

STATE_FILE: Final = ".export-state.json"
BATCH: Final = 5000


@dataclass(frozen=True, slots=True)
class TableExport:
    """What one run appended to one table's CSV file."""

    table: str
    path: Path
    rows: int
    last_rowid: int


def user_tables(conn: sqlite3.Connection) -> list[str]:
    """The database's tables, without SQLite's own, in name order."""
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
    ).fetchall()
    return [str(r[0]) for r in rows]


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [str(r[1]) for r in conn.execute(f'PRAGMA table_info("{table}")').fetchall()]


def _load_state(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise XylenError(f"{path}: unreadable export state: {exc}") from exc
    if not isinstance(data, dict):
        raise XylenError(f"{path}: unreadable export state (not an object)")
    return data


def _cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def _export_table(
    conn: sqlite3.Connection, table: str, out: Path, entry: dict[str, Any] | None
) -> tuple[TableExport, dict[str, Any]]:
    columns = _columns(conn, table)
    path = out / f"{table}.csv"
    last = 0
    if entry is not None and path.exists():
        if entry.get("columns") != columns:
            raise XylenError(
                f"{path}: the table's columns changed since the last export "
                f"({entry.get('columns')} -> {columns}); export to a new folder"
            )
        last = int(entry["last_rowid"])
        size = path.stat().st_size
        recorded = int(entry["bytes"])
        if size < recorded:
            raise XylenError(f"{path}: shorter than the export state records; export to a new folder")
        if size > recorded:  # an append whose state was never recorded: undo it
            logger.warning("%s: cutting an unrecorded append (%d -> %d bytes)", path, size, recorded)
            os.truncate(path, recorded)
    elif path.exists():
        raise XylenError(f"{path}: exists but is not in {STATE_FILE}; export to a new folder")
    fresh = not path.exists()
    quoted = ", ".join(f'"{c}"' for c in columns)
    try:
        cursor = conn.execute(
            f'SELECT rowid, {quoted} FROM "{table}"'  # nosec B608 # quoted names of the schema
            " WHERE rowid > ? ORDER BY rowid",
            (last,),
        )
    except sqlite3.OperationalError as exc:
        raise XylenError(f"{table}: cannot be exported by rowid: {exc}") from exc
    count = 0
    with open(path, "a", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        if fresh:
            writer.writerow(columns)
        while True:
            batch = cursor.fetchmany(BATCH)
            if not batch:
                break
            for row in batch:
                writer.writerow([_cell(v) for v in row[1:]])
            last = int(batch[-1][0])
            count += len(batch)
        handle.flush()
        os.fsync(handle.fileno())
    new_entry = {"last_rowid": last, "bytes": path.stat().st_size, "columns": columns}
    return TableExport(table, path, count, last), new_entry


def export_csv(conn: sqlite3.Connection, out: Path, tables: Sequence[str] | None = None) -> list[TableExport]:
    """Append the rows of ``tables`` (default: all) newer than the last export to ``out/<table>.csv``.

    Raises :class:`~xylen.errors.UsageError` for a table the database does not have.  The rows of
    all tables are read in one read transaction, so the files agree with each other.
    """
    known = user_tables(conn)
    chosen = list(tables) if tables else known
    unknown = [t for t in chosen if t not in known]
    if unknown:
        raise UsageError(f"no such table: {', '.join(unknown)} (tables: {', '.join(known)})")
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / STATE_FILE
    state = _load_state(state_path)
    results: list[TableExport] = []
    own_transaction = not conn.in_transaction
    if own_transaction:
        conn.execute("BEGIN")
    try:
        for table in chosen:
            result, entry = _export_table(conn, table, out, state.get(table))
            state[table] = entry
            # record after every table: a crash later never repeats the tables already done
            atomic_write_bytes(state_path, json.dumps(state, indent=1, sort_keys=True).encode())
            results.append(result)
    finally:
        if own_transaction and conn.in_transaction:
            conn.execute("COMMIT")
    return results
