"""`xylen demo` (what `make run` runs) end to end on the real shipped data, twice."""

from __future__ import annotations

import os
import re
import select
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from xylen.features import FEATURE_NAMES, FEATURE_VERSION


def _demo(home: Path, shared: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "xylen",
            "--home",
            str(home),
            "demo",
            "--data",
            str(shared),
            "--symbols",
            "BTCUSDT",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _gone(pid: int) -> bool:
    """No such process, or only its zombie (an orphan's, when no init reaps it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def test_demo_runs_the_pipeline_and_the_services_and_is_idempotent(tmp_path: Path, shared_data: Path) -> None:
    first = _demo(tmp_path, shared_data, "--duration", "25")
    assert first.returncode == 0, first.stderr
    out = first.stdout
    assert "BTCUSDT 5m: 143,900 candles 2023-01-01 00:00 .. 2024-05-14 15:35" in out
    assert "(143,900 new this run)" in out
    assert "no gaps, no short candles" in out
    # the only differences from the exchange's own files are the documented 2023-11-10 candles
    assert "15m from 5m: 47,966 candles compared with the exchange's file: 2 differ" in out
    assert "(2023-11-10 15:00, 2023-11-10 16:30)" in out
    assert "1h from 5m: 11,991 candles compared with the exchange's file: 1 differ (2023-11-10 15:00)" in out
    features = pd.read_parquet(
        tmp_path / "features" / "um" / "BTCUSDT" / "5m" / f"BTCUSDT-5m-{FEATURE_VERSION}.parquet"
    )
    assert len(features) == 143_900
    assert list(features.columns) == ["open_time", *FEATURE_NAMES]

    assert "a BTCUSDT trade through the paper exchange, over HTTP with signed requests:" in out
    assert "MARKET BUY 0.010: FILLED at " in out
    assert "bracket: STOP_MARKET at " in out and "TAKE_PROFIT_MARKET at " in out
    assert "bracket cancelled, balance 99" in out  # 10,000 USDT less fees and slippage

    # the services: a model trained, five children up on 127.0.0.1, beats printed from the journal
    assert "model: training a small LightGBM model on BTCUSDT 5m into " in out
    assert "the ensemble trades only on positive expected value after fees and slippage" in out
    for name in ("paper exchange: http://127.0.0.1:", "model server lightgbm: http://127.0.0.1:",
                 "model server onnx: http://127.0.0.1:", "model server river: http://127.0.0.1:",
                 "metrics:   http://127.0.0.1:", "WebSocket: ws://127.0.0.1:"):  # fmt: skip
        assert name in out, out
    beats = [line for line in out.splitlines() if line.startswith("beat ")]
    assert len(beats) >= 5, out
    assert "25 s done: stopping" in out and out.rstrip().endswith("all services stopped")
    assert (tmp_path / "demo-config.yaml").is_file()
    assert {p.name for p in (tmp_path / "logs").glob("*.log")} >= {
        "train.log", "paper-exchange.log", "coordinator.log",
        "model-server-lgbm.log", "model-server-onnx.log", "model-server-river.log",
    }  # fmt: skip
    with sqlite3.connect(tmp_path / "xylen.db") as conn:
        journal = conn.execute(
            "SELECT s.ts_ms, s.price, d.action FROM snapshots s JOIN decisions d USING (beat_id)"
            " ORDER BY s.rowid"
        ).fetchall()
        voted = {
            row[0]
            for row in conn.execute(
                "SELECT model_id FROM model_predictions WHERE status = 'ok' AND prob_up >= 0"
            )
        }
        versions = dict(
            conn.execute(
                "SELECT model_id, model_version FROM model_predictions WHERE status = 'ok'"
                " AND model_id IN ('demo-lgbm', 'demo-onnx')"
            ).fetchall()
        )
    assert len(journal) == len(beats)  # every printed beat is in the journal, and only those
    for line, (_ts, price, action) in zip(beats, journal, strict=True):
        assert f" {price:,.2f} | " in line and f"| {action}" in line
    assert voted == {"demo-lgbm", "demo-onnx", "demo-river"}
    # two different LightGBM models (one served over ONNX), not one model counted twice
    assert "model: training a second LightGBM model (2-hour horizon" in out
    assert len(versions) == 2 and versions["demo-lgbm"] != versions["demo-onnx"], versions
    pids = [int(p) for p in re.findall(r"pid (\d+)", out)]
    assert len(pids) == 5 and all(_gone(pid) for pid in pids)

    second = _demo(tmp_path, shared_data, "--pipeline-only")
    assert second.returncode == 0, second.stderr
    assert "(0 new this run)" in second.stdout
    assert "beat " not in second.stdout


def test_demo_config_is_a_valid_coordinator_config() -> None:
    from xylen.config import XylenConfig
    from xylen.demo_services import SPEED, demo_config

    config = XylenConfig.model_validate(
        demo_config("BTCUSDT", 9001, {"lgbm": 9002, "onnx": 9003, "river": 9004}, 9005, 9006)
    )
    assert config.heartbeat.clock == "accelerated" and config.heartbeat.speed == SPEED
    assert config.heartbeat.interval_seconds / SPEED <= 2.0  # a beat every second or two
    assert [s.url for s in config.model_servers] == [f"http://127.0.0.1:{p}" for p in (9002, 9003, 9004)]
    assert config.monitoring.metrics_host == config.dashboard.host == "127.0.0.1"
    # The default demo prices real costs and keeps the ensemble's gates: it trades only on positive EV.
    defaults = XylenConfig()
    assert config.trading.taker_fee_bps == defaults.trading.taker_fee_bps > 0
    assert config.ensemble == defaults.ensemble and config.risk.sizing == defaults.risk.sizing


def test_show_trades_config_prices_no_costs_and_no_minimum_edge() -> None:
    from xylen.config import XylenConfig
    from xylen.demo_services import demo_config

    ports = ("BTCUSDT", 9001, {"lgbm": 9002, "onnx": 9003, "river": 9004}, 9005, 9006)
    config = XylenConfig.model_validate(demo_config(*ports, trade_freely=True))
    assert config.exchange.mode == "paper"
    trading = config.trading
    assert (trading.taker_fee_bps, trading.maker_fee_bps, trading.slippage_bps) == (0, 0, 0)
    assert config.ensemble.min_edge == 0.0
    assert config.risk.sizing == "fixed_fraction" and config.risk.fixed_fraction == 0.01
    plain = XylenConfig.model_validate(demo_config(*ports))
    assert config.heartbeat == plain.heartbeat and config.model_servers == plain.model_servers


@pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="PR_SET_PDEATHSIG is Linux-only: elsewhere a SIGKILLed demo leaves its children running",
)
def test_sigkilled_demo_takes_its_children_with_it(tmp_path: Path, shared_data: Path) -> None:
    command = [sys.executable, "-m", "xylen", "--home", str(tmp_path), "demo", "--data", str(shared_data),
               "--symbols", "BTCUSDT"]  # fmt: skip
    demo = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert demo.stdout is not None
    out = b""
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 150
        while b"coordinator: pid" not in out:  # all five children are up once this is printed
            assert demo.poll() is None and time.monotonic() < deadline, out.decode(errors="replace")
            if select.select([demo.stdout], [], [], 1.0)[0]:
                out += os.read(demo.stdout.fileno(), 65536)
        pids = [int(p) for p in re.findall(rb"pid (\d+)", out)]
        assert len(pids) == 5 and not any(_gone(pid) for pid in pids), out.decode(errors="replace")
        demo.send_signal(signal.SIGKILL)
        assert demo.wait(10) == -signal.SIGKILL
        deadline = time.monotonic() + 15  # SIGTERM at once; each child stops within its own timeouts
        while not all(_gone(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [pid for pid in pids if not _gone(pid)] == [], "children outlived the SIGKILLed demo"
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(10)
        demo.stdout.close()
        for pid in pids:  # only if the test failed: do not leave them running
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)
