"""``xylen db migrate|status|export|backup|restore``: the coordinator's SQLite file.

All work on ``<home>/xylen.db`` and ``<home>/backups/``:

* ``migrate``: create the database if needed and apply the pending migrations;
* ``status``: schema version, size, row counts, backups (exit 1 when there is no database);
* ``export --out DIR [--tables T ...]``: append new rows to one CSV file per table;
* ``backup [--keep N]``: an online backup, integrity-checked, rotated to the newest N;
* ``restore --from FILE --yes``: replace the database by a verified backup; the replaced file is
  kept as ``xylen.db.before-restore-<ts>``.  Without ``--yes`` nothing is done (exit 2).

``migrate`` and ``restore`` hold the home's lock (``<home>/coordinator.lock``, the one a running
coordinator holds for its whole life) while they work: while a coordinator runs they refuse (exit 1)
with a message naming its pid, and no coordinator can start in the middle of them.

Exit status: 0 ok, 1 runtime failure (missing database, refused backup), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path
from typing import Any

from xylen.errors import UsageError, XylenError
from xylen.paths import Home


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "db", help="the coordinator's database: migrate, status, export, backup, restore"
    )
    inner = parser.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    migrate = inner.add_parser("migrate", help="create the database if needed and apply pending migrations")
    migrate.set_defaults(func=run_migrate)
    status = inner.add_parser("status", help="schema version, row counts and backups")
    status.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    status.set_defaults(func=run_status)
    export = inner.add_parser("export", help="append new rows to CSV files, one per table")
    export.add_argument("--out", required=True, type=Path, help="folder of the CSV files")
    export.add_argument("--tables", nargs="+", default=None, metavar="TABLE", help="default: all tables")
    export.set_defaults(func=run_export)
    backup = inner.add_parser("backup", help="online backup into <home>/backups, integrity-checked")
    backup.add_argument("--keep", type=int, default=7, help="backups to keep (default 7)")
    backup.set_defaults(func=run_backup)
    restore = inner.add_parser("restore", help="replace the database by a backup (coordinator stopped)")
    restore.add_argument("--from", dest="source", required=True, type=Path, help="the backup file")
    restore.add_argument("--yes", action="store_true", help="confirm: the current database is replaced")
    restore.set_defaults(func=run_restore)


def _existing_database(args: argparse.Namespace) -> Path:
    path = Home.resolve(args.home).database
    if not path.is_file():
        raise XylenError(f"{path}: no database (run `xylen db migrate` or start the coordinator)")
    return path


def _open(path: Path) -> sqlite3.Connection:
    from coordinator.storage.db import init_db

    try:
        return init_db(path)
    except (RuntimeError, ValueError, sqlite3.Error, OSError) as exc:
        raise XylenError(f"{path}: {exc}") from exc


def run_migrate(args: argparse.Namespace) -> int:
    from coordinator.storage.home_lock import HomeLock

    home = Home.resolve(args.home)
    with HomeLock(home.root, "xylen db migrate").hold():
        return _migrate(home.database)


def _migrate(path: Path) -> int:
    from coordinator.storage.db import latest_version

    before = 0
    if path.is_file():
        try:
            probe = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
            try:
                before = int(probe.execute("PRAGMA user_version").fetchone()[0])
            finally:
                probe.close()
        except sqlite3.Error as exc:
            raise XylenError(f"{path}: {exc}") from exc
    _open(path).close()
    latest = latest_version()
    print(f"{path}: schema version {latest} ({latest - before} migration(s) applied)")
    return 0


def status_dict(path: Path, backups_dir: Path) -> dict[str, Any]:
    """Version, size, row counts and backups, as plain JSON-able values."""
    from coordinator.storage.backup import list_backups
    from coordinator.storage.db import latest_version
    from coordinator.storage.export import user_tables

    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        counts = {
            t: int(conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0])  # nosec B608 # schema names
            for t in user_tables(conn)
        }
    except sqlite3.Error as exc:
        raise XylenError(f"{path}: {exc}") from exc
    finally:
        conn.close()
    return {
        "database": str(path),
        "schema_version": version,
        "latest_version": latest_version(),
        "size_bytes": path.stat().st_size,
        "tables": counts,
        "backups": [str(p) for p in list_backups(backups_dir)],
    }


def run_status(args: argparse.Namespace) -> int:
    home = Home.resolve(args.home)
    info = status_dict(_existing_database(args), home.backups)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    pending = info["latest_version"] - info["schema_version"]
    note = f", {pending} migration(s) pending" if pending > 0 else ""
    print(f"{info['database']}: schema version {info['schema_version']}{note}, {info['size_bytes']} bytes")
    for table, count in info["tables"].items():
        print(f"  {table}: {count} rows")
    print(f"backups: {len(info['backups'])}" + (f", newest {info['backups'][-1]}" if info["backups"] else ""))
    return 0


def run_export(args: argparse.Namespace) -> int:
    from coordinator.storage.export import export_csv

    conn = _open(_existing_database(args))
    try:
        results = export_csv(conn, args.out, args.tables)
    finally:
        conn.close()
    for r in results:
        print(f"{r.table}: {r.rows} new row(s) -> {r.path}")
    return 0


def run_backup(args: argparse.Namespace) -> int:
    from coordinator.storage.backup import backup

    if args.keep < 1:
        raise UsageError(f"--keep must be >= 1, got {args.keep}")
    home = Home.resolve(args.home)
    path = backup(_existing_database(args), home.backups, keep=args.keep)
    print(f"backup written: {path}")
    return 0


def run_restore(args: argparse.Namespace) -> int:
    from coordinator.storage.backup import check_database, restore

    source: Path = args.source
    if not source.is_file():
        raise XylenError(f"{source}: no such backup file")
    db_path = Home.resolve(args.home).database
    if not args.yes:
        check_database(source)
        raise UsageError(
            f"restore replaces {db_path} with {source}: confirm with --yes (coordinator stopped)"
        )
    from coordinator.storage.home_lock import HomeLock

    with HomeLock(db_path.parent, "xylen db restore").hold():
        aside = restore(source, db_path)
    kept = f"; the previous database is kept as {aside}" if aside is not None else ""
    print(f"restored {db_path} from {source}{kept}")
    return 0
