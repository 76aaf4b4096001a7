"""``feature_block(..., out=block)``: a reused caller block gets exactly the fresh result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from xylen.errors import UsageError
from xylen.features import FEATURE_NAMES, feature_block
from xylen.features.compute import as_arrays
from xylen.features.tests import load_candles


def test_reused_block_equals_fresh_block(shared_data: Path) -> None:
    candles = load_candles(shared_data, "ETH")[:20_000].reset_index(drop=True)
    arr = as_arrays(candles)
    fresh = feature_block(arr)
    holey = as_arrays(candles.drop(index=[5000, 12_345]).reset_index(drop=True))  # general HTF path
    for data, start in ((arr, 0), (arr, len(candles) - 300), (holey, 0)):
        expected = feature_block(data, start=start)
        for stale in (np.nan, 12345.0):  # every cell is written, whatever the block held
            block = np.full((len(FEATURE_NAMES), len(data["open_time"]) - start), stale, dtype=np.float32)
            got = feature_block(data, start=start, out=block)
            assert got is block
            assert got.tobytes() == expected.tobytes()
    assert fresh.tobytes() == feature_block(arr, out=np.empty_like(fresh)).tobytes()


def test_out_block_is_checked(shared_data: Path) -> None:
    arr = as_arrays(load_candles(shared_data, "ETH")[:1_000])
    f = len(FEATURE_NAMES)
    for bad in (
        np.empty((f, 999), dtype=np.float32),
        np.empty((f, 1_000), dtype=np.float64),
        np.empty((1_000, f), dtype=np.float32).T,  # right shape, not C-contiguous
    ):
        with pytest.raises(UsageError):
            feature_block(arr, out=bad)
