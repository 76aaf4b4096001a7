"""`xylen demo` (what `make run` runs) end to end on the real shipped data, twice."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

from xylen.features import FEATURE_NAMES, FEATURE_VERSION


def _demo(home: Path, shared: Path) -> subprocess.CompletedProcess[str]:
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
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_demo_runs_the_pipeline_and_is_idempotent(tmp_path: Path, shared_data: Path) -> None:
    first = _demo(tmp_path, shared_data)
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

    second = _demo(tmp_path, shared_data)
    assert second.returncode == 0, second.stderr
    assert "(0 new this run)" in second.stdout
