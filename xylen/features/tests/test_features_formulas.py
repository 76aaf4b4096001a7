"""Hand-written features against independent pandas formulas on real candles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import talib

from xylen.features import FEATURE_NAMES, FEATURE_VERSION, compute_features
from xylen.features.tests import load_candles

ROWS = 20_000


@pytest.fixture(scope="module", params=["BTC", "ETH"])
def data(request: pytest.FixtureRequest, shared_data: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    candles = load_candles(shared_data, request.param)[40_000 : 40_000 + ROWS].reset_index(drop=True)
    return candles, compute_features(candles)


def close_enough(ours: pd.Series, ref: pd.Series, name: str, atol: float = 1e-9) -> None:
    np.testing.assert_allclose(
        ours.to_numpy(np.float64), ref.to_numpy(np.float64), rtol=1e-5, atol=atol, err_msg=name
    )
    assert (ours.isna() == ref.isna()).all(), name


def test_formulas(data: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    df, f = data
    o, h, lo, c, v = (df[k] for k in ("open", "high", "low", "close", "volume"))
    rng = (h - lo).where(h > lo)
    close_enough(f["body_ratio"], ((c - o) / rng).fillna(0.0), "body_ratio")
    top, bottom = pd.concat([o, c], axis=1).max(axis=1), pd.concat([o, c], axis=1).min(axis=1)
    close_enough(f["upper_shadow_ratio"], ((h - top) / rng).fillna(0.0), "upper_shadow_ratio")
    close_enough(f["lower_shadow_ratio"], ((bottom - lo) / rng).fillna(0.0), "lower_shadow_ratio")
    for k in (1, 5, 15, 60):
        close_enough(f[f"log_ret_{k}"], np.log(c / c.shift(k)), f"log_ret_{k}", atol=1e-8)
    atr = pd.Series(talib.ATR(h.to_numpy(), lo.to_numpy(), c.to_numpy(), 14))
    close_enough(f["price_mom_12"], ((c - c.shift(12)) / atr), "price_mom_12", atol=1e-6)
    s12 = v.rolling(12).sum()
    close_enough(f["volume_mom_12"], s12 / s12.shift(12) - 1, "volume_mom_12", atol=1e-6)
    z = (v - v.rolling(20).mean()) / v.rolling(20).std(ddof=0)
    close_enough(f["volume_z_20"], z, "volume_z_20", atol=1e-5)
    r = np.log(c).diff()
    close_enough(f["realised_vol_20"], np.sqrt((r**2).rolling(20).mean()), "realised_vol_20")
    obv = np.sign(c.diff()).fillna(0.0) * v
    obv.iloc[0] = v.iloc[0]
    obv = obv.cumsum()
    close_enough(f["obv_flow_20"], obv.diff(20) / v.rolling(20).sum(), "obv_flow_20", atol=1e-6)


def test_time_features(data: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    df, f = data
    ts = pd.to_datetime(df["open_time"], unit="ms", utc=True)
    hour = ts.dt.hour + ts.dt.minute / 60.0
    close_enough(f["hour_sin"], np.sin(2 * np.pi * hour / 24), "hour_sin", atol=1e-7)
    close_enough(f["hour_cos"], np.cos(2 * np.pi * hour / 24), "hour_cos", atol=1e-7)
    close_enough(f["dow_sin"], np.sin(2 * np.pi * ts.dt.dayofweek / 7), "dow_sin", atol=1e-7)
    close_enough(f["dow_cos"], np.cos(2 * np.pi * ts.dt.dayofweek / 7), "dow_cos", atol=1e-7)
    # Same values when a hole forces the gather path instead of the periodic fill.
    holed = df.drop(index=[5000]).reset_index(drop=True)
    g = compute_features(holed)
    for name in ("hour_sin", "hour_cos", "dow_sin", "dow_cos"):
        np.testing.assert_array_equal(g[name].to_numpy(), f[name].drop(index=[5000]).to_numpy())


def test_shape_and_types(data: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    df, f = data
    assert FEATURE_VERSION == "f3"
    assert len(FEATURE_NAMES) >= 30 and len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert list(f.columns) == ["open_time", *FEATURE_NAMES]
    assert f["open_time"].dtype == np.int64 and (f["open_time"] == df["open_time"]).all()
    assert all(f[n].dtype == np.float32 for n in FEATURE_NAMES)
    assert np.isfinite(f[list(FEATURE_NAMES)].iloc[300:].to_numpy()).all()
