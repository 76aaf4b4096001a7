"""Online backups of the coordinator's SQLite file, their rotation, and restore.

* :func:`backup` copies the live database with SQLite's online backup API
  (``sqlite3.Connection.backup``, all pages in one step, so a writer on another connection never
  restarts it and the copy is one consistent snapshot), switches the copy to a standalone rollback
  journal file, runs ``PRAGMA integrity_check`` on it, and only then gives it its final name
  ``xylen-YYYYMMDDTHHMMSSZ.db`` by an atomic rename.  The newest ``keep`` backups are kept.
* :func:`restore` refuses a file that is not a sound SQLite database (header, size, integrity
  check, schema version newer than this code), refuses while another connection holds a write
  lock, keeps the replaced database aside as ``xylen.db.before-restore-<ts>`` (with its ``-wal``
  and ``-shm``), and puts a verified copy of the backup in place by an atomic rename.
* :class:`DailyBackup` runs one backup a day at ``hour_utc`` (:func:`due`), supervised: a failure is
  logged and retried after a back-off; cancellation propagates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Final

from coordinator.storage.db import latest_version
from xylen.errors import XylenError
from xylen.fileio import fsync_dir, temp_path_for
from xylen.timeutil import wall_ms

logger = logging.getLogger(__name__)

MS_PER_DAY: Final = 86_400_000
MS_PER_HOUR: Final = 3_600_000
SQLITE_MAGIC: Final = b"SQLite format 3\x00"
BACKUP_NAME: Final = re.compile(r"^xylen-(\d{8}T\d{6}Z)(?:-(\d+))?\.db$")


class BackupError(XylenError):
    """A backup that could not be made, or a file refused for a restore (exit 1)."""


def _stamp(now_ms: int) -> str:
    return datetime.fromtimestamp(now_ms / 1000, tz=timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _stamp_ms(stamp: str) -> int:
    parsed = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    return int(parsed.timestamp() * 1000)


def list_backups(backups_dir: Path) -> list[Path]:
    """The backups in ``backups_dir`` (names ``xylen-<stamp>[-n].db``), oldest first."""
    if not backups_dir.is_dir():
        return []
    found: list[tuple[str, int, Path]] = []
    for path in backups_dir.iterdir():
        match = BACKUP_NAME.match(path.name)
        if match and path.is_file():
            found.append((match.group(1), int(match.group(2) or 0), path))
    return [path for _, _, path in sorted(found)]


def backup_time_ms(path: Path) -> int | None:
    """When the backup ``path`` was taken, from its name (None for another name)."""
    match = BACKUP_NAME.match(path.name)
    return _stamp_ms(match.group(1)) if match else None


def check_database(path: Path) -> int:
    """Check that ``path`` is a sound SQLite database; return its ``user_version``.

    Raises :class:`BackupError` naming what is wrong: not a SQLite file, truncated (the file is
    shorter than the page count in its header), an ``integrity_check`` failure, or a schema version
    newer than this code.  The file is opened read-only and immutable: nothing is written next to it.
    """
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            header = handle.read(100)
    except OSError as exc:
        raise BackupError(f"{path}: cannot read: {exc}") from exc
    if len(header) < 100 or not header.startswith(SQLITE_MAGIC):
        raise BackupError(f"{path}: not a SQLite database")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    change_counter, valid_for = header[24:28], header[92:96]
    if page_size < 512 or size % page_size:
        raise BackupError(f"{path}: truncated or damaged ({size} bytes is not a whole number of pages)")
    if pages and change_counter == valid_for and pages * page_size > size:
        raise BackupError(f"{path}: truncated ({size} bytes, the header says {pages * page_size})")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
        try:
            result = [str(r[0]) for r in conn.execute("PRAGMA integrity_check").fetchall()]
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path}: not a usable SQLite database: {exc}") from exc
    if result != ["ok"]:
        raise BackupError(f"{path}: integrity check failed: {'; '.join(result[:5])}")
    latest = latest_version()
    if version > latest:
        raise BackupError(f"{path}: schema version {version} is newer than this code ({latest})")
    return version


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _free_name(backups_dir: Path, stamp: str) -> Path:
    path = backups_dir / f"xylen-{stamp}.db"
    n = 1
    while path.exists():
        n += 1
        path = backups_dir / f"xylen-{stamp}-{n}.db"
    return path


def rotate(backups_dir: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` backups; return the deleted paths."""
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    old = list_backups(backups_dir)[:-keep]
    for path in old:
        path.unlink()
        logger.info("rotated out backup %s", path.name)
    return old


def backup(db_path: Path, backups_dir: Path, keep: int = 7, *, now_ms: int | None = None) -> Path:
    """Back up ``db_path`` online into ``backups_dir``, verify the copy, rotate; return its path."""
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    if not db_path.is_file():
        raise BackupError(f"{db_path}: no database to back up")
    backups_dir.mkdir(parents=True, exist_ok=True)
    stamp = _stamp(wall_ms() if now_ms is None else now_ms)
    tmp = temp_path_for(backups_dir / f"xylen-{stamp}.db")
    try:
        try:
            source = sqlite3.connect(str(db_path), timeout=30.0)
            try:
                dest = sqlite3.connect(str(tmp), isolation_level=None)
                try:
                    source.backup(dest)  # pages=-1: one step, one consistent snapshot
                    dest.execute("PRAGMA journal_mode=DELETE")  # a standalone file, no -wal needed
                finally:
                    dest.close()
            finally:
                source.close()
        except sqlite3.Error as exc:
            raise BackupError(f"{db_path}: backup failed: {exc}") from exc
        check_database(tmp)
        _fsync_file(tmp)
        final = _free_name(backups_dir, stamp)
        os.replace(tmp, final)
        fsync_dir(backups_dir)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    logger.info("backed up %s to %s", db_path, final)
    rotate(backups_dir, keep)
    return final


def _assert_not_in_use(db_path: Path) -> None:
    """Refuse when another connection is writing; checkpoint the WAL so the file is complete."""
    try:
        conn = sqlite3.connect(str(db_path), timeout=0.5, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise BackupError(f"{db_path}: in use by another process (stop the coordinator first)") from exc
        logger.warning("%s: could not checkpoint before restore: %s", db_path, exc)
    except sqlite3.DatabaseError as exc:  # a damaged live file is moved aside as it is
        logger.warning("%s: could not checkpoint before restore: %s", db_path, exc)


def restore(backup_path: Path, db_path: Path, *, now_ms: int | None = None) -> Path | None:
    """Replace ``db_path`` by a verified copy of ``backup_path``; return where the old file went.

    Raises :class:`BackupError` (the live database untouched) when the backup is refused.  Returns
    None when there was no database to replace.
    """
    check_database(backup_path)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(db_path)
    aside: Path | None = None
    try:
        shutil.copyfile(backup_path, tmp)
        check_database(tmp)  # the copy, not only the original, is what goes live
        _fsync_file(tmp)
        if db_path.exists():
            _assert_not_in_use(db_path)
            aside = db_path.with_name(f"{db_path.name}.before-restore-{_stamp(now_ms or wall_ms())}")
            n = 1
            while aside.exists():
                n += 1
                aside = db_path.with_name(f"{db_path.name}.before-restore-{_stamp(now_ms or wall_ms())}-{n}")
            os.replace(db_path, aside)
            for suffix in ("-wal", "-shm"):
                side = db_path.with_name(db_path.name + suffix)
                if side.exists():
                    os.replace(side, aside.with_name(aside.name + suffix))
        os.replace(tmp, db_path)
        fsync_dir(db_path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    logger.warning("restored %s from %s (previous file kept as %s)", db_path, backup_path, aside)
    return aside


def due(now_ms: int, last_ms: int | None, hour_utc: int) -> bool:
    """Whether a daily backup is due: none yet since the latest ``hour_utc``:00 UTC at or before now."""
    if not 0 <= hour_utc <= 23:
        raise ValueError(f"hour_utc must be 0..23, got {hour_utc}")
    scheduled = (now_ms // MS_PER_DAY) * MS_PER_DAY + hour_utc * MS_PER_HOUR
    if scheduled > now_ms:
        scheduled -= MS_PER_DAY
    return last_ms is None or last_ms < scheduled


@dataclass
class DailyBackup:
    """One backup a day at ``hour_utc``; :meth:`run_daily` is the supervised loop the app starts."""

    db_path: Path
    backups_dir: Path
    keep: int = 7
    hour_utc: int = 0
    check_interval_s: float = 60.0
    max_backoff_s: float = 3600.0

    def last_backup_ms(self) -> int | None:
        """When the newest backup in ``backups_dir`` was taken (None when there is none)."""
        backups = list_backups(self.backups_dir)
        return backup_time_ms(backups[-1]) if backups else None

    def due(self, now_ms: int) -> bool:
        return due(now_ms, self.last_backup_ms(), self.hour_utc)

    async def run_daily(
        self,
        now_ms: Callable[[], int] = wall_ms,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """Check every ``check_interval_s``; back up when :meth:`due` (in a worker thread).

        Never returns: a failure is logged and retried after an exponential back-off (capped at
        ``max_backoff_s``); ``CancelledError`` propagates.
        """
        failures = 0
        while True:
            delay = self.check_interval_s
            try:
                now = now_ms()
                if self.due(now):
                    path = await asyncio.to_thread(
                        backup, self.db_path, self.backups_dir, self.keep, now_ms=now
                    )
                    logger.info("daily backup written: %s", path)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                delay = min(self.max_backoff_s, self.check_interval_s * 2.0 ** min(failures, 20))
                logger.exception("daily backup failed (%d in a row); retrying in %.0f s", failures, delay)
            await sleep(delay)
