"""No look-ahead: a row computed from candles[:t+1] equals row t of the full computation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xylen.features import FEATURE_NAMES, compute_features, feature_specs, max_warmup
from xylen.features.tests import load_candles

ROWS = 12_000


@pytest.mark.parametrize("offset", [0, 7])  # 7: the slice starts at 00:35, mid-hour
def test_prefix_rows_equal_full_rows(shared_data: Path, offset: int) -> None:
    candles = load_candles(shared_data)[50_000 + offset : 50_000 + offset + ROWS].reset_index(drop=True)
    full = compute_features(candles)[list(FEATURE_NAMES)].to_numpy()
    rng = np.random.default_rng(20240514 + offset)
    cuts = rng.integers(max_warmup(), ROWS - 1, size=30)
    for t in cuts:
        prefix = compute_features(candles[: t + 1])[list(FEATURE_NAMES)].to_numpy()
        assert np.array_equal(prefix[-1], full[t], equal_nan=True), t
        assert np.array_equal(prefix[t - 50 : t], full[t - 50 : t], equal_nan=True), t


def test_future_changes_do_not_leak(shared_data: Path) -> None:
    candles = load_candles(shared_data)[:5000].reset_index(drop=True)
    base = compute_features(candles)
    t = 3210  # 5m row opening 11:30 on day 12
    scrambled = candles.copy()
    for col in ("open", "high", "low", "close", "volume"):
        scrambled.loc[t + 1 :, col] = scrambled.loc[t + 1 :, col].to_numpy()[::-1]
    changed = compute_features(scrambled)
    pd.testing.assert_frame_equal(base.iloc[: t + 1], changed.iloc[: t + 1])


def test_htf_uses_only_closed_candles(shared_data: Path) -> None:
    candles = load_candles(shared_data)[:3000].reset_index(drop=True)
    f = compute_features(candles).set_index("open_time")
    day = int(candles["open_time"].iloc[0]) + 2 * 86_400_000
    at = {m: day + m * 60_000 for m in (9 * 60 + 55, 10 * 60, 10 * 60 + 5, 10 * 60 + 50, 10 * 60 + 55)}
    col = f["rsi_14_1h"]
    # 09:55 row closes with the 09:00 hour: its value holds through 10:50; 10:55 brings the 10:00 hour.
    assert col[at[595]] == col[at[600]] == col[at[605]] == col[at[650]]
    assert col[at[655]] != col[at[650]]
    # Changing the 10:00..10:50 candles must not move the 1h values before the hour closes.
    moved = candles.copy()
    sel = (moved["open_time"] >= at[600]) & (moved["open_time"] <= at[650])
    moved.loc[sel, ["high", "close"]] *= 1.01
    g = compute_features(moved).set_index("open_time")
    atr = f["atr_14_rel_1h"]  # the 1h high moved: the 1h ATR changes, but only once the hour closed
    assert g["atr_14_rel_1h"][at[650]] == atr[at[650]] and g["atr_14_rel_1h"][at[655]] != atr[at[655]]
    assert g["rsi_14_1h"][at[650]] == col[at[650]]


@pytest.mark.parametrize("offset", [0, 5])
def test_warmup_rows_are_nan_then_finite(shared_data: Path, offset: int) -> None:
    candles = load_candles(shared_data)[offset : offset + 3000].reset_index(drop=True)
    f = compute_features(candles)
    for spec in feature_specs("5m"):
        values = f[spec.name].to_numpy()
        first = int(np.argmax(~np.isnan(values)))
        if offset == 0:  # starts at 00:00 UTC: exactly the spec warm-up
            assert first == spec.warmup, spec.name
        assert spec.warmup <= first <= spec.warmup_max, spec.name
        assert np.isnan(values[:first]).all() and np.isfinite(values[first:]).all(), spec.name
