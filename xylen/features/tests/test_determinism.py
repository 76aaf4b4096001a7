"""Same input, bit-identical output; input form and memory layout do not matter."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xylen.features import compute_feature_matrix, compute_features
from xylen.features.tests import load_candles


def test_bit_identical_repeats_and_inputs(shared_data: Path) -> None:
    candles = load_candles(shared_data, "ETH")[:20_000].reset_index(drop=True)
    a = compute_features(candles)
    b = compute_features(candles.copy())
    assert a.equals(b)
    assert a.iloc[:, 1:].to_numpy().tobytes() == b.iloc[:, 1:].to_numpy().tobytes()
    arrays = {k: candles[k].to_numpy()[::-1].copy()[::-1] for k in candles.columns}  # non-contiguous views
    m = compute_feature_matrix(arrays)
    assert m.dtype == np.float32 and m.shape == (len(candles), a.shape[1] - 1)
    assert m.tobytes() == np.ascontiguousarray(a.iloc[:, 1:].to_numpy()).tobytes()
    assert np.ascontiguousarray(m).tobytes() == np.ascontiguousarray(compute_feature_matrix(arrays)).tobytes()
