"""Look-ahead analysis on the shipped BTCUSDT 5m candles: a planted feature that peeks one candle
ahead is named, a planted model that votes on the next candle's return is caught in the decisions,
and the real feature set and pipeline (two small LightGBM models trained before the span) are clean.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from backtest import settings
from backtest.data import MarketHistory, load_candles, load_funding_frame
from backtest.lookahead import LookaheadReport, analyse
from backtest.votes import ModelVotes, TrainSettings, model_votes, train_dir
from xylen.cli.main import main
from xylen.config import XylenConfig
from xylen.config.loader import parse_config
from xylen.features import FEATURE_NAMES

SYMBOL = "BTCUSDT"
START = "2024-03-05"
END = "2024-03-05 06:00"


def _ms(day: str) -> int:
    return int(pd.Timestamp(day, tz="UTC").value // 1_000_000)


@pytest.fixture(scope="module")
def candles(shared_data: Path) -> pd.DataFrame:
    frame, _ = load_candles(SYMBOL)
    return frame


@pytest.fixture(scope="module")
def funding(shared_data: Path) -> pd.DataFrame | None:
    _, funding_dir = load_candles(SYMBOL)
    return load_funding_frame(funding_dir, SYMBOL)


@pytest.fixture(scope="module")
def model_dirs(candles: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    before = candles[candles["open_time"] < _ms(START) - 3_600_000].reset_index(drop=True)
    small = TrainSettings(rounds=20, folds=2, max_rows=8_000)
    root = tmp_path_factory.mktemp("models")
    return [train_dir(before, SYMBOL, root / f"m{s}", small, s, _ms(START), interval="5m") for s in (1, 2)]


def trading_config(model_ids: list[str]) -> XylenConfig:
    """No minimum edge and a short horizon, so that a few hours trade and the order path runs."""
    data = settings.default_config_data(SYMBOL)
    data["ensemble"] = {"quorum": 1, "min_edge": 0.0, "max_disagreement": 0.5}
    data["trading"] = {"horizon_minutes": 10, "entry": "market"}
    return settings.with_models(parse_config(data), model_ids)


def future_close(frame: pd.DataFrame) -> np.ndarray[Any, Any]:
    """Peeks one candle ahead: the next candle's close."""
    return frame["close"].shift(-1).to_numpy()


def test_a_feature_peeking_one_candle_ahead_is_named(candles: pd.DataFrame) -> None:
    report = analyse(
        trading_config(["unused"]),
        candles,
        SYMBOL,
        _ms(START),
        _ms(END),
        lambda h: [],
        cuts=5,
        extra={"future_close": future_close},
        decisions=False,
    )
    assert not report.clean
    assert report.peeking("feature") == ["future_close"]
    finding = report.findings[0]
    assert finding.first_ms == report.cuts_ms[0]  # the cut candle itself: its next close is gone
    assert finding.cuts == len(report.cuts_ms) == 5
    assert finding.rows == 5 and finding.cut_rows_only  # only the cut row differs: it peeks one candle
    assert finding.example[1] == "nan"
    # the real features (calendar and higher-timeframe ones included) were checked and are clean
    assert set(FEATURE_NAMES) <= set(report.features_checked)
    assert {"rsi_14_15m", "rsi_14_1h"} <= set(report.features_checked)


def _peeking_votes(history: MarketHistory) -> list[ModelVotes]:
    """A 'model' that votes on the next candle's return: the future itself."""
    close = history.candles["close"].to_numpy(np.float64)
    ahead = np.r_[close[1:], np.nan] / close - 1.0
    probs = np.clip(0.5 + ahead * 200.0, 0.05, 0.95)
    versions = ["peek" if np.isfinite(p) else "" for p in probs]
    return [ModelVotes("peek", "lightgbm", probs, versions)]


def test_a_model_voting_on_the_future_changes_decisions(
    candles: pd.DataFrame, funding: pd.DataFrame | None
) -> None:
    report = analyse(
        trading_config(["peek"]),
        candles,
        SYMBOL,
        _ms(START),
        _ms(END),
        _peeking_votes,
        funding=funding,
        cuts=4,
    )
    assert report.peeking("feature") == []  # the features are the engine's own: clean
    peeking = report.peeking("decision")
    # the peeking vote is missing at each cut candle only (its next candle is gone)
    assert any(f.cut_rows_only for f in report.findings if f.name == "p:peek")
    assert "p:peek" in peeking and "probability" in peeking and "action" in peeking


def test_the_real_pipeline_is_clean(
    candles: pd.DataFrame, funding: pd.DataFrame | None, model_dirs: list[Path]
) -> None:
    ids = [f"bt-{d.name}" for d in model_dirs]
    report = analyse(
        trading_config(ids),
        candles,
        SYMBOL,
        _ms(START),
        _ms(END),
        lambda h: model_votes(model_dirs, h),
        funding=funding,
        cuts=5,
    )
    assert report.decisions_checked > 100
    assert report.peeking("feature") == []
    assert report.peeking("decision") == []
    # the account a decision sees is marked at its candle's close, so nothing differs at all
    assert report.findings == []


def _write_peek_module(folder: Path) -> None:
    (folder / "peek_features.py").write_text(
        "def future_close(frame):\n    return frame['close'].shift(-1).to_numpy()\n\n"
        "def past_close(frame):\n    return frame['close'].shift(1).to_numpy()\n\n"
        "def rsi_14(frame):\n    return frame['close'].to_numpy()\n",
        encoding="utf-8",
    )


def test_command_exit_codes_and_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_peek_module(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    span = ["--from", START, "--to", END, "--cuts", "4", "--features-only"]
    out = tmp_path / "report.json"
    assert (
        main(["lookahead-analysis", *span, "--feature", "peek_features:future_close", "--report", str(out)])
        == 1
    )
    data = json.loads(out.read_text())
    # what the run logs goes beside the report, not to the terminal
    shown = capsys.readouterr().out
    assert f"log: {tmp_path / 'report.log'} (0 warnings, 0 errors)" in shown and '"level"' not in shown
    assert "funding rates for BTCUSDT" in (tmp_path / "report.log").read_text()
    assert data["clean"] is False
    assert [f["name"] for f in data["peeking_features"]] == ["future_close"]
    assert data["peeking_features"][0]["max_abs_diff"] is None  # a value against a NaN
    clean = tmp_path / "clean.json"
    assert (
        main(["lookahead-analysis", *span, "--feature", "peek_features:past_close", "--report", str(clean)])
        == 0
    )
    assert json.loads(clean.read_text())["clean"] is True
    # bad usage: exit 2
    assert main(["lookahead-analysis", *span[:4], "--cuts", "0"]) == 2
    assert main(["lookahead-analysis", *span, "--feature", "no_such_module_xyz:f"]) == 2
    assert main(["lookahead-analysis", *span, "--feature", "peek_features"]) == 2
    assert main(["lookahead-analysis", *span, "--feature", "peek_features:rsi_14"]) == 2  # the engine's name
    assert main(["lookahead-analysis", "--from", END, "--to", START]) == 2
    assert main(["lookahead-analysis", *span, "--interval", "1h"]) == 2  # no base of the feature set
    sys.modules.pop("peek_features", None)


def test_report_json_is_plain(candles: pd.DataFrame) -> None:
    report: LookaheadReport = analyse(
        trading_config(["unused"]),
        candles,
        SYMBOL,
        _ms(START),
        _ms(END),
        lambda h: [],
        cuts=2,
        decisions=False,
    )
    data = json.loads(report.to_json())
    assert data["clean"] is True and data["peeking_features"] == [] and len(data["cuts"]) == 2
