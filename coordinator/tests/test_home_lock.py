"""The home lock with real processes: a live holder blocks restore, migrate and a second coordinator.

The holder is a separate Python process that takes the lock exactly as the coordinator does
(:class:`HomeLock`); the commands are the real CLI entry points run as processes.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from coordinator.storage.backup import backup
from coordinator.storage.db import init_db
from coordinator.storage.home_lock import HomeLock, HomeLocked, holder_pid

REPO = Path(__file__).resolve().parents[2]
HOLDER = (
    "import sys, time\n"
    "from pathlib import Path\n"
    "from coordinator.storage.home_lock import HomeLock\n"
    "HomeLock(Path(sys.argv[1])).acquire()\n"
    "print('held', flush=True)\n"
    "time.sleep(120)\n"
)


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"NOTIFY_SOCKET", "WATCHDOG_USEC"}}
    env.update(XYLEN_HOME=str(home), PYTHONPATH=str(REPO))
    return env


@pytest.fixture
def home(tmp_path: Path) -> Path:
    root = tmp_path / "home"
    conn = init_db(root / "xylen.db")
    conn.execute("CREATE TABLE marker (x INTEGER)")  # only in this database, not in the backup
    conn.execute("INSERT INTO marker VALUES (1)")
    conn.close()
    return root


@pytest.fixture
def holder(home: Path) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(home)], cwd=REPO, env=_env(home), stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _xylen(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xylen.cli.main", "--home", str(home), *args],
        cwd=REPO, env=_env(home), capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def _rows(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT count(*) FROM marker").fetchone()[0])
    finally:
        conn.close()


def test_restore_migrate_and_a_second_coordinator_refuse_while_the_home_is_held(
    home: Path, holder: subprocess.Popen[str], tmp_path: Path
) -> None:
    db = home / "xylen.db"
    empty = init_db(tmp_path / "other" / "xylen.db")
    empty.close()
    saved = backup(tmp_path / "other" / "xylen.db", tmp_path / "backups")
    assert holder_pid(home) == holder.pid

    restore = _xylen(home, "db", "restore", "--from", str(saved), "--yes")
    assert restore.returncode == 1, restore
    assert f"pid {holder.pid}" in restore.stderr, restore.stderr
    assert _rows(db) == 1  # the database in use was not replaced

    migrate = _xylen(home, "db", "migrate")
    assert migrate.returncode == 1 and f"pid {holder.pid}" in migrate.stderr, migrate

    second = subprocess.run(
        [sys.executable, "-m", "coordinator", "--log-format", "text"],
        cwd=REPO, env=_env(home), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert second.returncode == 1, second
    assert f"pid {holder.pid}" in second.stderr + second.stdout, second


def test_a_killed_holder_leaves_no_lock_behind(home: Path, holder: subprocess.Popen[str]) -> None:
    with pytest.raises(HomeLocked, match=f"pid {holder.pid}"):
        HomeLock(home).acquire()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    migrate = _xylen(home, "db", "migrate")
    assert migrate.returncode == 0, migrate
    lock = HomeLock(home)
    with lock.hold():
        assert holder_pid(home) == os.getpid()
    assert holder_pid(home) is None
