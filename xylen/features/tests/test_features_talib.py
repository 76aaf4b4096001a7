"""Every TA-Lib-based feature against TA-Lib called directly on real candles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import talib

from xylen.features import compute_features, raw_indicators, resample_candles
from xylen.features.tests import load_candles

ROWS = 20_000


@pytest.fixture(scope="module")
def data(shared_data: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    candles = load_candles(shared_data)[:ROWS].reset_index(drop=True)
    return candles, compute_features(candles)


def f32(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).astype(np.float32)


def test_direct_outputs_exact(data: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    candles, feats = data
    h, lo, c = (candles[k].to_numpy() for k in ("high", "low", "close"))
    expected = {
        "rsi_14": talib.RSI(c, 14),
        "rsi_28": talib.RSI(c, 28),
        "adx_14": talib.ADX(h, lo, c, 14),
        "plus_di_14": talib.PLUS_DI(h, lo, c, 14),
        "minus_di_14": talib.MINUS_DI(h, lo, c, 14),
    }
    for name, ref in expected.items():
        np.testing.assert_array_equal(feats[name].to_numpy(), f32(ref), err_msg=name)


def test_normalised_outputs(data: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    candles, feats = data
    h, lo, c, v = (candles[k].to_numpy() for k in ("high", "low", "close", "volume"))
    exact = {f"ema_{p}_dist": c / talib.EMA(c, p) - 1 for p in (9, 20, 50, 200)}
    up, mid, low = talib.BBANDS(c, 20, 2.0, 2.0, 0)
    exact |= {"bb_upper_dist": c / up - 1, "bb_middle_dist": c / mid - 1, "bb_lower_dist": c / low - 1}
    exact |= {"bb_width": (up - low) / mid, "bb_pctb": (c - low) / (up - low)}
    for name, ref in exact.items():  # same float64 operations: bit-identical after the cast
        np.testing.assert_array_equal(feats[name].to_numpy(), f32(ref), err_msg=name)
    macd, sig, hist = talib.MACD(c, 12, 26, 9)
    obv = talib.OBV(c, v)
    vsum = talib.SUM(v, 20)
    close_rel = {  # multiplied by a reciprocal in the engine: one extra rounding in float64
        "macd_line": macd / c,
        "macd_signal": sig / c,
        "macd_hist": hist / c,
        "atr_14_rel": talib.ATR(h, lo, c, 14) / c,
        "obv_slope_14": talib.LINEARREG_SLOPE(obv, 14) / (vsum / 20),
    }
    for name, ref in close_rel.items():
        np.testing.assert_allclose(feats[name].to_numpy(), f32(ref), rtol=1e-6, atol=0, err_msg=name)


def test_raw_indicators_exact(data: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    candles, _ = data
    c, v = candles["close"].to_numpy(), candles["volume"].to_numpy()
    raw = raw_indicators(candles)
    np.testing.assert_array_equal(raw["ema_200"], talib.EMA(c, 200))
    np.testing.assert_array_equal(raw["obv"], talib.OBV(c, v))
    np.testing.assert_array_equal(raw["bb_upper"], talib.BBANDS(c, 20, 2.0, 2.0, 0)[0])
    np.testing.assert_array_equal(raw["macd_signal"], talib.MACD(c, 12, 26, 9)[1])


@pytest.mark.parametrize("tf", ["15m", "1h"])
def test_htf_against_talib_on_resampled(data: tuple[pd.DataFrame, pd.DataFrame], tf: str) -> None:
    candles, feats = data
    htf = resample_candles(candles, "5m", tf)
    h, lo, c = (htf[k].to_numpy() for k in ("high", "low", "close"))
    values = pd.DataFrame(
        {
            "close_time": htf["close_time"],
            f"rsi_14_{tf}": f32(talib.RSI(c, 14)),
            f"ema_20_dist_{tf}": f32(c / talib.EMA(c, 20) - 1),
            f"atr_14_rel_{tf}": f32(talib.ATR(h, lo, c, 14) / c),
        }
    )
    rows = pd.DataFrame({"close_time": candles["open_time"] + 300_000 - 1})
    asof = pd.merge_asof(rows, values, on="close_time")  # last HTF candle closed by the row's close
    for name in values.columns[1:]:
        np.testing.assert_array_equal(feats[name].to_numpy(), asof[name].to_numpy(np.float32), err_msg=name)
