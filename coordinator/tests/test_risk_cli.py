"""``xylen risk status|reset``: in process through ``main([...])``, and once as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from coordinator.risk import RiskStore
from coordinator.storage.db import init_db
from coordinator.tests.risk_support import NOW, SYMBOL, D, manager
from xylen.cli.main import main

REPO = Path(__file__).resolve().parents[2]


def halted_home(tmp_path: Path) -> Path:
    store = RiskStore(init_db(tmp_path / "xylen.db"))
    m = manager(store=store)
    m.on_equity(D("10000"), D("0"), NOW)
    m.on_close(SYMBOL, D("-160"), NOW + 1)
    for i in range(5):
        m.on_exchange_error(NOW + 2 + i)
    m.halt("drill", NOW + 10)
    store.conn.close()
    return tmp_path


def test_status_prints_the_persisted_state(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = halted_home(tmp_path)
    assert main(["--home", str(home), "risk", "status"]) == 0
    out = capsys.readouterr().out
    assert "HALTED since 2024-06-01 00:00:00 UTC: drill" in out
    assert "daily PnL -160" in out and "limits reached: daily_loss_limit_usd" in out
    assert "breaker error_burst: clear, k=1, trips 1" in out  # its hour ended long before the wall clock
    assert main(["--home", str(home), "risk", "status", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["halted"] is True and info["breakers"]["error_burst"]["trips"] == 1
    assert info["losses"] == 1 and info["win_rate"] == 0.0


def test_reset_clears_the_halt_and_breakers_and_logs_who(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = halted_home(tmp_path)
    assert main(["--home", str(home), "risk", "reset", "--by", "bob", "--note", "after the drill"]) == 0
    assert "risk reset by bob" in capsys.readouterr().out
    store = RiskStore(init_db(home / "xylen.db"))
    state = store.load()
    assert not state.halted
    assert all(b.level == 0 and b.tripped_until_ms == 0 for b in state.breakers.states.values())
    assert state.daily_limit_hit == ("daily_loss_limit_usd",)  # the day's limit is not lifted
    assert store.events(1)[0][1:] == ("reset", "was halted (drill); after the drill", "bob")


def test_missing_database_is_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--home", str(tmp_path / "nowhere"), "risk", "status"]) == 1
    assert main(["--home", str(tmp_path / "nowhere"), "risk", "reset"]) == 1
    assert "no database" in capsys.readouterr().err
    assert not (tmp_path / "nowhere").exists()


def test_exit_codes_in_a_subprocess(tmp_path: Path) -> None:
    home = halted_home(tmp_path / "home")
    env = {**os.environ, "XYLEN_HOME": str(home)}
    run = [sys.executable, "-m", "xylen"]
    ok = subprocess.run(
        [*run, "risk", "reset"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert ok.returncode == 0, ok.stderr
    assert not RiskStore(init_db(home / "xylen.db")).load().halted
    env["XYLEN_HOME"] = str(tmp_path / "empty")
    missing = subprocess.run([*run, "risk", "status"], cwd=REPO, env=env, capture_output=True, timeout=60)
    assert missing.returncode == 1
    usage = subprocess.run([*run, "risk"], cwd=REPO, env=env, capture_output=True, timeout=60)
    assert usage.returncode == 2
