"""latest_row (the coordinator path) against the batch computation on real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xylen.features import DEFAULT_HISTORY, FEATURE_NAMES, compute_features, latest_row, latest_row_array
from xylen.features.tests import load_candles


@pytest.fixture(scope="module")
def full(shared_data: Path) -> tuple[pd.DataFrame, np.ndarray]:
    candles = load_candles(shared_data)
    return candles, compute_features(candles)[list(FEATURE_NAMES)].to_numpy()


def test_matches_batch_at_default_history(full: tuple[pd.DataFrame, np.ndarray]) -> None:
    candles, batch = full
    arrays = {k: candles[k].to_numpy() for k in candles.columns}
    rng = np.random.default_rng(7)
    cuts = rng.integers(DEFAULT_HISTORY + 10, len(candles), size=40)
    for t in (*cuts, len(candles) - 1):
        tail = {k: v[t + 1 - DEFAULT_HISTORY : t + 1] for k, v in arrays.items()}
        row = latest_row_array(tail)
        assert row.dtype == np.float32
        np.testing.assert_allclose(row, batch[t], rtol=1e-6, atol=1e-9, err_msg=str(t))


def test_window_longer_than_history_and_frame_input(full: tuple[pd.DataFrame, np.ndarray]) -> None:
    candles, batch = full
    t = 100_000
    frame = candles.iloc[t - 9000 : t + 1]
    row = latest_row(frame)  # only the last DEFAULT_HISTORY candles are used
    assert row["open_time"] == float(candles["open_time"].iloc[t])
    values = np.array([row[n] for n in FEATURE_NAMES], dtype=np.float32)
    np.testing.assert_allclose(values, batch[t], rtol=1e-6, atol=1e-9)
    arrays = {k: frame[k].to_numpy()[-DEFAULT_HISTORY:] for k in frame.columns}
    np.testing.assert_array_equal(latest_row_array(frame), latest_row_array(arrays))
