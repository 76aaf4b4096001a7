"""``init_db(path)``: the coordinator's SQLite connection, migrated to the latest schema.

Settings: WAL journal, ``foreign_keys=ON``, ``busy_timeout``, and ``synchronous=FULL`` by default
(an fsync of the WAL on every commit, so a committed order event survives a power cut, not only a
killed process).  ``synchronous`` is per connection: a later high-rate table may use a second
connection with ``NORMAL``.  The connection is in autocommit mode (``isolation_level=None``):
callers open their own transactions (``BEGIN IMMEDIATE`` ... ``COMMIT``).

Migrations: ``migrations/NNNN_name.sql``, numbered from 1 without gaps.  The schema version is
``PRAGMA user_version``; each migration above it runs in its own transaction together with the
update of ``user_version``, so a failed migration leaves the file at the previous version.  A file
whose version is above the latest known migration is refused (it was written by newer code).
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
from pathlib import Path
from typing import Final, Literal

logger = logging.getLogger(__name__)

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"
_NAME: Final = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
Synchronous = Literal["FULL", "NORMAL"]


def _migrations(directory: Path) -> list[tuple[int, Path]]:
    found: list[tuple[int, Path]] = []
    for path in sorted(directory.iterdir()):
        match = _NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
        elif path.suffix == ".sql":
            raise ValueError(f"{path}: migration names look like 0001_name.sql")
    numbers = [number for number, _ in found]
    if numbers != list(range(1, len(numbers) + 1)):
        raise ValueError(f"{directory}: migrations must be numbered 1..N without gaps, got {numbers}")
    return found


def latest_version(directory: Path = MIGRATIONS_DIR) -> int:
    """The version the newest migration in ``directory`` brings a database to."""
    return len(_migrations(directory))


def migrate(conn: sqlite3.Connection, directory: Path = MIGRATIONS_DIR) -> int:
    """Apply the migrations above the file's ``user_version``, each in one transaction.

    Returns the number applied (0 when the file is current).  Raises ``RuntimeError`` for a file
    newer than this code.
    """
    migrations = _migrations(directory)
    current = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if current > len(migrations):
        raise RuntimeError(f"database schema version {current} is newer than this code ({len(migrations)})")
    applied = 0
    for number, path in migrations[current:]:
        script = path.read_text(encoding="utf-8")
        try:
            # executescript commits any open transaction first, so BEGIN/COMMIT go inside the script
            conn.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        logger.info("applied migration %s", path.name)
        applied += 1
    return applied


def init_db(
    path: str | os.PathLike[str],
    *,
    synchronous: Synchronous = "FULL",
    migrations: Path = MIGRATIONS_DIR,
    busy_timeout_ms: int = 5000,
) -> sqlite3.Connection:
    """Open (creating if needed) the database at ``path``, configure it and migrate it."""
    if synchronous not in ("FULL", "NORMAL"):
        raise ValueError(f"synchronous must be FULL or NORMAL, got {synchronous!r}")
    in_memory = str(path) == ":memory:"
    if not in_memory:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        if not in_memory:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise RuntimeError(f"{path}: could not switch to WAL (journal_mode={mode})")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        migrate(conn, migrations)
    except BaseException:
        conn.close()
        raise
    return conn
