"""Labels on hand-made cases: hold band, horizon, gaps, and feature/label alignment (no look-ahead)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from model_server.training.dataset import build_dataset
from model_server.training.labels import direction_labels, forward_return, make_labels, round_trip_cost
from xylen.config.schema import TradingConfig
from xylen.features import compute_feature_matrix, max_warmup


def test_round_trip_cost_from_trading_config() -> None:
    assert round_trip_cost(TradingConfig()) == pytest.approx(0.0012)  # 2 * (5 + 1) bps
    assert round_trip_cost(TradingConfig(taker_fee_bps=4.0, slippage_bps=0.0)) == pytest.approx(0.0008)


def test_forward_return_uses_close_t_and_t_plus_h_only() -> None:
    close = np.array([100.0, 101.0, 99.0, 102.0, 100.0])
    fwd = forward_return(close, 2)
    assert fwd[0] == pytest.approx(99.0 / 100.0 - 1)
    assert fwd[1] == pytest.approx(102.0 / 101.0 - 1)
    assert fwd[2] == pytest.approx(100.0 / 99.0 - 1)
    assert np.isnan(fwd[3:]).all()  # no close t + h yet


def test_hold_band_and_cost() -> None:
    returns = np.array([0.002, -0.002, 0.001, -0.001, 0.0012, -0.0012, np.nan])
    labels = direction_labels(returns, 0.0012)
    assert labels[0] == 1.0 and labels[1] == 0.0
    assert np.isnan(labels[2:]).all()  # inside the band, on its edges, unknown


def test_gap_inside_horizon_has_no_label() -> None:
    step = 300_000
    open_time = np.array([0, 1, 2, 4, 5, 6]) * step  # candle 3 missing
    close = np.array([100.0, 110.0, 90.0, 120.0, 80.0, 100.0])
    labels, fwd = make_labels(close, 2, 0.001, open_time, step)
    assert labels[0] == 0.0  # 90 / 100, bars 0..2 contiguous
    assert np.isnan(fwd[1]) and np.isnan(fwd[2])  # windows 1..3 and 2..4 cross the gap
    assert labels[3] == 0.0  # 100 / 120 over 4..6


def _candles(n: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 30_000 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    open_ = np.r_[close[0], close[:-1]]
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.001, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.001, n))
    return pd.DataFrame(
        {
            "open_time": np.arange(n, dtype=np.int64) * 300_000,
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": rng.uniform(10, 100, n),
        }
    )


def test_features_use_rows_up_to_t_and_label_uses_closes_t_to_t_plus_h() -> None:
    candles = _candles(max_warmup("5m") + 200)
    h = 12
    ds = build_dataset(candles, "5m", h, 0.0005)
    full = compute_feature_matrix(candles, "5m")
    row = len(ds) // 2
    t = int(ds.bar[row])
    # Features of row t equal those computed from candles 0..t only (no future row used).
    prefix = compute_feature_matrix(candles.iloc[: t + 1], "5m")
    np.testing.assert_array_equal(ds.X[row], prefix[-1])
    np.testing.assert_array_equal(ds.X[row], full[t])
    # The label reads close[t] and close[t + h]; changing any later close leaves it unchanged.
    close = candles["close"].to_numpy()
    assert ds.forward_return[row] == pytest.approx(close[t + h] / close[t] - 1)
    changed = candles.copy()
    changed.loc[t + h + 1 :, "close"] *= 2.0
    labels, _ = make_labels(changed["close"].to_numpy(), h, 0.0005)
    assert labels[t] == ds.y[row]
    # The last h candles have no label, so no row beyond n - h - 1 is used.
    assert ds.bar[-1] <= len(candles) - 1 - h
