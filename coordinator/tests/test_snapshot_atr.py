"""The snapshot's ATR in price units comes from the scale-free feature times the close (real data)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest
import talib

from coordinator.snapshot import MarketSnapshot
from xylen.data.importers import read_freqtrade_feather
from xylen.features import latest_row


def test_snapshot_atr_is_atr_rel_times_close(btc_5m_path: Path) -> None:
    candles = read_freqtrade_feather(btc_5m_path).iloc[-600:].reset_index(drop=True)
    features = latest_row({c: candles[c].to_numpy() for c in candles.columns}, "5m")
    close = float(candles["close"].iloc[-1])
    snap = MarketSnapshot(
        symbol="BTCUSDT",
        interval="5m",
        taken_ms=0,
        server_ms=0,
        open_time_ms=int(candles["open_time"].iloc[-1]),
        close_time_ms=int(candles["open_time"].iloc[-1]) + 299_999,
        close=close,
        mark_price=Decimal(str(close)),
        last_price=Decimal(str(close)),
        funding_rate=0.0,
        next_funding_ms=None,
        features=features,
        candles=[],
        candle_count=len(candles),
        new_candles=1,
    )
    h, lo, c = (candles[k].to_numpy() for k in ("high", "low", "close"))
    expected = float(talib.ATR(h, lo, c, 14)[-1])
    assert snap.atr == pytest.approx(expected, rel=1e-5)
    assert replace(snap, features={}).atr is None  # no ATR known: no bracket distance invented
