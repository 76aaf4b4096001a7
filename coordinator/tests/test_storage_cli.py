"""``xylen db migrate|status|export|backup|restore`` through ``main([...])``: output and exit codes."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from coordinator.storage.backup import list_backups
from coordinator.storage.db import latest_version
from xylen.cli.main import main


def db(home: Path) -> Path:
    return home / "xylen.db"


def add_event(home: Path, n: int = 1) -> None:
    conn = sqlite3.connect(db(home))
    conn.executemany(
        "INSERT INTO risk_events (ts_ms, kind, detail, actor) VALUES (?, 'k', 'd', 'a')",
        [(i,) for i in range(n)],
    )
    conn.commit()
    conn.close()


def events(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT count(*) FROM risk_events").fetchone()[0])
    finally:
        conn.close()


def test_missing_database_is_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = str(tmp_path / "home")
    for argv in (["status"], ["backup"], ["export", "--out", str(tmp_path / "csv")]):
        assert main(["--home", home, "db", *argv]) == 1
        assert "no database" in capsys.readouterr().err
    assert not db(tmp_path / "home").exists()


def test_migrate_status_backup_export_restore(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    assert main(["--home", str(home), "db", "migrate"]) == 0
    assert (
        f"schema version {latest_version()} ({latest_version()} migration(s) applied)"
        in capsys.readouterr().out
    )
    assert main(["--home", str(home), "db", "migrate"]) == 0
    assert "(0 migration(s) applied)" in capsys.readouterr().out
    add_event(home, 3)

    assert main(["--home", str(home), "db", "status", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["schema_version"] == latest_version() and info["tables"]["risk_events"] == 3
    assert info["tables"]["decisions"] == 0 and info["backups"] == []

    assert main(["--home", str(home), "db", "backup", "--keep", "2"]) == 0
    assert "backup written" in capsys.readouterr().out
    backups = list_backups(home / "backups")
    assert len(backups) == 1 and events(backups[0]) == 3
    assert main(["--home", str(home), "db", "backup", "--keep", "0"]) == 2

    out = tmp_path / "csv"
    assert main(["--home", str(home), "db", "export", "--out", str(out), "--tables", "risk_events"]) == 0
    assert "risk_events: 3 new row(s)" in capsys.readouterr().out
    add_event(home, 2)
    assert main(["--home", str(home), "db", "export", "--out", str(out), "--tables", "risk_events"]) == 0
    assert "risk_events: 2 new row(s)" in capsys.readouterr().out
    assert len((out / "risk_events.csv").read_text().splitlines()) == 1 + 5
    assert main(["--home", str(home), "db", "export", "--out", str(out), "--tables", "nope"]) == 2
    assert "no such table: nope" in capsys.readouterr().err

    # restore: --yes is required; a garbage file is refused with exit 1; a backup works
    assert main(["--home", str(home), "db", "restore", "--from", str(backups[0])]) == 2
    assert "--yes" in capsys.readouterr().err and events(db(home)) == 5
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"\x00garbage" * 1000)
    live = db(home).read_bytes()
    assert main(["--home", str(home), "db", "restore", "--from", str(garbage), "--yes"]) == 1
    assert "not a SQLite database" in capsys.readouterr().err
    assert db(home).read_bytes() == live
    assert main(["--home", str(home), "db", "restore", "--from", str(tmp_path / "none.db"), "--yes"]) == 1
    assert main(["--home", str(home), "db", "restore", "--from", str(backups[0]), "--yes"]) == 0
    assert "previous database is kept as" in capsys.readouterr().out
    assert events(db(home)) == 3
    assert len(list(home.glob("xylen.db.before-restore-*"))) == 1

    assert main(["--home", str(home), "db", "status"]) == 0
    text = capsys.readouterr().out
    assert f"schema version {latest_version()}," in text and "risk_events: 3 rows" in text


def test_bad_usage_is_exit_2(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--home", str(tmp_path), "db", "restore"])  # --from is required
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["--home", str(tmp_path), "db", "frobnicate"])
    assert exc.value.code == 2
