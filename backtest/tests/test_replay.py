"""`xylen replay`: a journal written by the coordinator's heartbeat is recomputed decision by decision.

Two journals: one written by the heartbeat inside a short backtest on the shipped BTCUSDT candles
(the heartbeat's own ``_decide_and_act`` and outcome labelling, the pool and its calibration
learning from hundreds of outcomes), and one written by a live coordinator (``xylen demo``: real
model server processes, the paper exchange over HTTP, an accelerated clock).  Both replay with no
divergence; a journal with one altered vote or a different config diverges, and the command says
so with exit status 1.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import time
from pathlib import Path

import pandas as pd
import pytest

from backtest import settings
from backtest.data import history_of, load_candles
from backtest.engine import RunOptions, run_backtest
from backtest.replay import open_journal, replay
from backtest.votes import TrainSettings, VoteBook, trained_models
from xylen.cli.main import main
from xylen.config import XylenConfig
from xylen.config.loader import parse_config

SYMBOL = "BTCUSDT"
START = "2024-03-05"
END = "2024-03-07"

pytestmark = pytest.mark.slow


def _ms(day: str) -> int:
    return int(pd.Timestamp(day, tz="UTC").value // 1_000_000)


def trading_config(model_ids: list[str]) -> XylenConfig:
    """Zero costs and no minimum edge, so that two days trade (as ``xylen demo --show-trades``)."""
    data = settings.default_config_data(SYMBOL)
    data["ensemble"] = {"quorum": 1, "min_edge": 0.0, "max_disagreement": 0.5}
    data["risk"].update(sizing="fixed_fraction", fixed_fraction=0.01, cooldown_after_loss_seconds=0.0)
    data["trading"] = {"horizon_minutes": 30, "entry": "market", "taker_fee_bps": 0.0, "slippage_bps": 0.0}
    data["model_servers"] = [{"id": m, "url": settings.IN_PROCESS_URL} for m in model_ids]
    return parse_config(data)


@pytest.fixture(scope="module")
def journal(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(xylen.db, config.yaml)`` of a two-day backtest."""
    candles, funding_dir = load_candles(SYMBOL)
    from backtest.data import load_funding_frame

    history = history_of(
        candles, SYMBOL, _ms(START), _ms(END), funding=load_funding_frame(funding_dir, SYMBOL)
    )
    before = candles[candles["open_time"] < _ms(START) - 3_600_000].reset_index(drop=True)
    work = tmp_path_factory.mktemp("replay")
    small = TrainSettings(rounds=20, folds=2, max_rows=8_000, seeds=(1, 2))
    book = VoteBook(trained_models(before, history, work / "models", small))
    config = trading_config(book.model_ids)
    result = asyncio.run(run_backtest(config, history, votes=book, options=RunOptions(work_dir=work / "run")))
    assert (result.decisions["action"] != "HOLD").sum() >= 5
    path = work / "config.yaml"
    import yaml

    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    return work / "run" / "xylen.db", path


def test_a_backtest_journal_replays_without_divergence(
    journal: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    db, config_path = journal
    conn = open_journal(db)
    try:
        report = replay(conn, settings.load(config_path, SYMBOL))
        n = conn.execute("SELECT count(*) FROM decisions").fetchone()[0]
        trades = conn.execute("SELECT count(*) FROM decisions WHERE action != 'HOLD'").fetchone()[0]
    finally:
        conn.close()
    assert report.beats == n == 576 and trades >= 5
    assert report.outcomes >= n - 10  # all but the last horizon's were labelled and learnt from
    assert report.params_differ == 0
    assert report.differences == []
    assert main(["replay", "--db", str(db), "--config", str(config_path)]) == 0
    # --from/--to choose the decisions reported; the state is still rebuilt from the start
    conn = open_journal(db)
    try:
        day = replay(conn, settings.load(config_path, SYMBOL), start_ms=_ms("2024-03-06"))
    finally:
        conn.close()
    assert day.beats == 288 and day.differences == []
    # a window without decisions says where the journal's are
    args = ["replay", "--db", str(db), "--config", str(config_path), "--from", "2025-01-01"]
    assert main(args) == 0
    shown = capsys.readouterr().out
    assert "note: no decision in --from..--to; the journal's run from 2024-03-05 00:04:59.999 to" in shown
    assert "replayed 0 decisions" in shown


def test_an_altered_vote_diverges_from_that_decision_on(
    journal: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, config_path = journal
    copy = tmp_path / "xylen.db"
    shutil.copy(db, copy)
    conn = sqlite3.connect(copy)
    beat, ts = conn.execute(
        "SELECT beat_id, ts_ms FROM decisions WHERE action != 'HOLD' ORDER BY ts_ms LIMIT 1 OFFSET 2"
    ).fetchone()
    conn.execute(
        "UPDATE model_predictions SET prob_up = 1.0 - prob_up WHERE beat_id = ? AND position = 0", (beat,)
    )
    conn.commit()
    conn.close()
    ro = open_journal(copy)
    try:
        report = replay(ro, settings.load(config_path, SYMBOL))
    finally:
        ro.close()
    assert report.diverged[0] == beat
    assert all(d.ts_ms >= ts for d in report.differences)
    assert {d.check for d in report.differences if d.beat_id == beat} == {
        "pipeline"
    }  # the log agrees with itself
    capsys.readouterr()
    assert main(["replay", "--db", str(copy), "--config", str(config_path)]) == 1
    out = capsys.readouterr().out
    assert f"DIVERGED {beat}" in out and "[pipeline] probability" in out


def test_another_config_diverges_and_says_so(
    journal: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, config_path = journal
    text = config_path.read_text().replace("min_edge: 0.0", "min_edge: 0.05")
    assert text != config_path.read_text()
    other = tmp_path / "other.yaml"
    other.write_text(text)
    assert main(["replay", "--db", str(db), "--config", str(other)]) == 1
    out = capsys.readouterr().out
    assert "other decision parameters than the config's" in out and "diverged" in out


def test_bad_arguments_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "--db", str(tmp_path / "missing.db")]) == 2
    assert "--db" in capsys.readouterr().err
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    assert main(["replay", "--db", str(empty)]) == 2
    assert "not a coordinator database" in capsys.readouterr().err
    garbage = tmp_path / "notes.db"
    garbage.write_text("not a database at all\n" * 100)
    assert main(["replay", "--db", str(garbage)]) == 2
    assert "--db " + str(garbage) + ": not a readable SQLite database" in capsys.readouterr().err
    assert main(["replay", "--db", str(empty), "--from", "2024-02-01", "--to", "2024-01-01"]) == 2
    assert main(["replay", "--db", str(empty), "--from", "yesterday-ish"]) == 2


def test_a_live_coordinator_journal_replays_without_divergence(shared_data: Path, tmp_path: Path) -> None:
    """``xylen demo``'s coordinator (three real model servers over HTTP, an accelerated clock) runs
    until some decisions have been labelled; its journal replays with its own config."""
    from tests.demo_support import running_demo

    home = tmp_path / "home"
    with running_demo(home, shared_data) as demo:
        assert any(line.startswith("backtest:  xylen backtest --symbol BTCUSDT") for line in demo.lines)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            demo.read_lines(2.0)
            with sqlite3.connect(f"file:{home / 'xylen.db'}?mode=ro", uri=True) as conn:
                done = conn.execute("SELECT count(*) FROM outcomes").fetchone()[0]
            if done >= 3:
                break
        else:
            pytest.fail("the demo labelled no 3 decisions within 120 s")
    config = home / "demo-config.yaml"
    conn = open_journal(home / "xylen.db")
    try:
        report = replay(conn, settings.load(config, SYMBOL))
    finally:
        conn.close()
    assert report.beats >= 12 and report.outcomes >= 3
    assert report.params_differ == 0
    assert report.differences == []
