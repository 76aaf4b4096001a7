"""The rules of :mod:`xylen.preflight`: venue state, risk against the balance, backups and run history.

Backups and journals are real SQLite files (a journal made by ``xylen db migrate``); the venue
checks take plain :class:`VenueState` data, as the command line fills it from the exchange.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from xylen.config.schema import XylenConfig
from xylen.preflight import local, venue
from xylen.preflight.report import Report, Status, failed, passed, warned

NOW_MS = 1_700_000_000_000


def config(**sections: object) -> XylenConfig:
    return XylenConfig.model_validate(sections)


def state(**overrides: object) -> venue.VenueState:
    values: dict[str, object] = {
        "server_time_ms": NOW_MS + 5,
        "local_before_ms": NOW_MS,
        "local_after_ms": NOW_MS + 10,
        "hedge_mode": False,
        "symbols": {"BTCUSDT": venue.SymbolSetting("isolated", 2, Decimal(0), 125)},
        "balance_usdt": Decimal("10000"),
    }
    values.update(overrides)
    return venue.VenueState(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(("skew", "status"), [(0, Status.PASS), (400, Status.WARN), (-1500, Status.FAIL)])
def test_clock_skew_thresholds(skew: int, status: Status) -> None:
    check = venue.clock_check(state(server_time_ms=NOW_MS + 5 + skew), 5000)
    assert check.status is status and f"{skew:+d} ms" in check.detail


def test_position_mode() -> None:
    assert venue.position_mode_check(state()).status is Status.PASS
    assert venue.position_mode_check(state(hedge_mode=True)).status is Status.WARN
    held = {"BTCUSDT": venue.SymbolSetting("isolated", 2, Decimal("0.01"), 125)}
    check = venue.position_mode_check(state(hedge_mode=True, symbols=held))
    assert check.status is Status.FAIL and "BTCUSDT" in check.detail


def test_margin_mode_and_leverage_on_the_venue() -> None:
    cfg = config()
    assert venue.margin_mode_check(cfg, state()).status is Status.PASS
    cross = {"BTCUSDT": venue.SymbolSetting("cross", 20, Decimal(0), 125)}
    assert venue.margin_mode_check(cfg, state(symbols=cross)).status is Status.WARN
    assert venue.leverage_venue_check(cfg, state(symbols=cross)).status is Status.WARN
    held = {"BTCUSDT": venue.SymbolSetting("cross", 2, Decimal("-0.5"), 125)}
    assert venue.margin_mode_check(cfg, state(symbols=held)).status is Status.FAIL
    low_cap = {"BTCUSDT": venue.SymbolSetting("isolated", 2, Decimal(0), 1)}
    check = venue.leverage_venue_check(cfg, state(symbols=low_cap))
    assert check.status is Status.FAIL and "allows 1x" in check.detail
    other = config(market={"symbols": ["ETHUSDT"]})
    assert venue.margin_mode_check(other, state()).status is Status.FAIL  # the venue lists no ETHUSDT


def test_risk_against_the_balance() -> None:
    cfg = config()  # daily loss: min(200 USD, 2%), caps 2,000 / 4,000, leverage 2
    assert venue.risk_check(cfg, state()).status is Status.PASS
    assert venue.risk_check(cfg, state(balance_usdt=Decimal(0))).status is Status.FAIL
    # 500 USDT: the 200 USD limit is capped by 2% = 10 USD, but 4,000 exposure > 500 x 2
    assert venue.risk_check(cfg, state(balance_usdt=Decimal(500))).status is Status.WARN
    loose = config(risk={"daily_loss_limit_pct": 50.0, "daily_loss_limit_usd": 5000.0})
    check = venue.risk_check(loose, state())
    assert check.status is Status.FAIL and "25%" in check.detail
    fixed = config(risk={"sizing": "fixed_amount", "fixed_amount_usd": 20000.0})
    assert venue.risk_check(fixed, state()).status is Status.FAIL


def test_report_exit_code_and_lines() -> None:
    report = Report()
    report.add(passed("a", "fine"), warned("b", "hm"))
    assert report.exit_code == 0 and report.lines()[-1] == "preflight: 1 passed, 1 warnings, 0 failed"
    report.add(failed("c", "broken"))
    assert report.exit_code == 1 and report.lines()[2].startswith("FAIL  c ")


def test_secrets_file_mode_and_keys(tmp_path: Path) -> None:
    path = tmp_path / "secrets.env"
    path.write_text("BINANCE_API_KEY=k\nBINANCE_API_SECRET=s\n")
    path.chmod(0o640)
    check, values = local.secrets_file_check({"XYLEN_SECRETS_FILE": str(path)})
    assert check.status is Status.FAIL and "chmod 600" in check.detail and values == {}
    path.chmod(0o600)
    check, values = local.secrets_file_check({"XYLEN_SECRETS_FILE": str(path)})
    assert check.status is Status.PASS and values["BINANCE_API_KEY"] == "k"
    testnet = config(exchange={"mode": "testnet"})
    keys = {c.name: c for c in local.key_checks(testnet, {}, values)}
    assert keys["exchange keys"].status is Status.PASS and "k" not in keys["exchange keys"].detail.split()
    keys = {c.name: c for c in local.key_checks(testnet, {}, {})}
    assert keys["exchange keys"].status is Status.FAIL and "BINANCE_API_KEY" in keys["exchange keys"].detail
    remote = config(model_servers=[{"id": "m", "url": "http://10.0.0.5:8001"}])
    assert {c.name: c.status for c in local.key_checks(remote, {}, {})}["model token"] is Status.FAIL


def _sqlite(path: Path) -> Path:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x)")
    return path


def test_backups_recent_old_and_damaged(tmp_path: Path) -> None:
    db, backups = tmp_path / "xylen.db", tmp_path / "backups"
    assert local.backup_check(db, backups).status is Status.WARN  # nothing yet: a fresh home
    _sqlite(db)
    assert local.backup_check(db, backups).status is Status.FAIL  # a journal, never backed up
    backups.mkdir()
    newest = _sqlite(backups / "xylen-20240101T000000Z.db")
    assert local.backup_check(db, backups).status is Status.PASS
    day = 86_400
    os.utime(newest, (time.time() - 2 * day, time.time() - 2 * day))
    assert local.backup_check(db, backups).status is Status.WARN
    os.utime(newest, (time.time() - 4 * day, time.time() - 4 * day))
    assert local.backup_check(db, backups).status is Status.FAIL
    (backups / "xylen-20240102T000000Z.db").write_bytes(b"not a database" * 100)
    check = local.backup_check(db, backups)
    assert check.status is Status.FAIL and "damaged" in check.detail


def test_free_disk_thresholds(tmp_path: Path) -> None:
    assert local.disk_check(tmp_path, min_free_gib=0.001, warn_free_gib=0.002).status is Status.PASS
    assert local.disk_check(tmp_path, min_free_gib=10**6).status is Status.FAIL
    assert local.disk_check(tmp_path, min_free_gib=0.001, warn_free_gib=10**6).status is Status.WARN


def _journal(home: Path, decisions: int, trades: int) -> Path:
    """A journal migrated by ``xylen db migrate``, with decisions and trades rows."""
    subprocess.run(
        [sys.executable, "-m", "xylen", "--home", str(home), "db", "migrate"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    path = home / "xylen.db"
    with sqlite3.connect(path) as conn:  # foreign keys are off unless asked for: no snapshots needed
        conn.executemany(
            "INSERT INTO decisions (beat_id, ts_ms, symbol, action, probability, confidence, size_fraction,"
            " disagreement, source, hold_reasons)"
            " VALUES (?, ?, 'BTCUSDT', 'HOLD', 0.5, 0.5, 0, 0, 'log_odds', '[]')",
            [(f"b{i}", NOW_MS + i * 300_000) for i in range(decisions)],
        )
        conn.executemany(
            "INSERT INTO trades (intent_id, symbol, side, entry_ms, exit_ms, entry_price, exit_price, qty,"
            " realised_pnl, fees, funding, exit_reason) VALUES (?, 'BTCUSDT', 'LONG', 0, 1, '1', '1', '1',"
            " '0', '0', '0', 'close')",
            [(f"i{i}",) for i in range(trades)],
        )
    return path


def test_run_history(tmp_path: Path) -> None:
    paper, live = config(), config(exchange={"mode": "live", "confirm_live": True})
    home = tmp_path / "home"
    assert local.history_check(paper, home / "xylen.db", None, 10).status is Status.WARN
    assert local.history_check(live, home / "xylen.db", None, 10).status is Status.FAIL  # no --history
    db = _journal(home, decisions=12, trades=0)
    check = local.history_check(paper, db, None, 10)
    assert check.status is Status.WARN and "no trade yet" in check.detail and "12 decisions" in check.detail
    db2 = _journal(tmp_path / "paper-run", decisions=12, trades=3)
    assert local.history_check(live, db, db2, 10).status is Status.PASS
    assert local.history_check(live, db, db2, 100).status is Status.FAIL  # too short for live
    assert local.history_check(paper, db, db2, 100).status is Status.WARN
    assert local.history_check(live, db, _sqlite(tmp_path / "other.db"), 10).status is Status.FAIL
