"""5m -> 15m / 1h aggregation against the exchange's own 15m and 1h files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xylen.features import resample_arrays, resample_candles
from xylen.features.tests import load_candles

# The three candles of 2023-11-10 documented in the data README (both symbols).
EXPECTED_MISMATCH = {
    "1h": {("2023-11-10 15:00", "volume")},
    "15m": {
        ("2023-11-10 15:00", "high"),
        ("2023-11-10 15:00", "close"),
        ("2023-11-10 15:00", "volume"),
        ("2023-11-10 16:30", "volume"),
    },
}


@pytest.mark.parametrize("symbol", ["BTC", "ETH"])
@pytest.mark.parametrize("target", ["15m", "1h"])
def test_matches_exchange_files(shared_data: Path, symbol: str, target: str) -> None:
    base = load_candles(shared_data, symbol, "5m")
    ref = load_candles(shared_data, symbol, target)
    got = resample_candles(base, "5m", target)
    # Same bucket set: the trailing partial bucket of the 5m file is dropped.
    assert got["open_time"].tolist() == ref["open_time"].tolist()
    assert (got["close_time"] - got["open_time"] == pd.Timedelta(target).value // 1_000_000 - 1).all()
    mismatches = set()
    for col in ("open", "high", "low", "close"):
        bad = got[col].to_numpy() != ref[col].to_numpy()
        mismatches |= {(t, col) for t in got["open_time"][bad]}
    rel = np.abs(got["volume"].to_numpy() / ref["volume"].to_numpy() - 1.0)
    mismatches |= {(t, "volume") for t in got["open_time"][rel > 1e-9]}
    readable = {(str(pd.Timestamp(t, unit="ms"))[:16], c) for t, c in mismatches}
    assert readable == EXPECTED_MISMATCH[target]
    assert got[["quote_volume", "trades"]].isna().all().all()  # not in the source: NaN, never invented


def _with_holes(shared: Path) -> pd.DataFrame:
    df = load_candles(shared)[7 : 7 + 3000].reset_index(drop=True)  # starts mid-hour (00:35)
    return df.drop(index=[100, 101, 1500, 2999 - 5]).reset_index(drop=True)


@pytest.mark.parametrize("target_ms", [900_000, 3_600_000, 14_400_000])
def test_holes_and_partial_buckets_dropped(shared_data: Path, target_ms: int) -> None:
    df = _with_holes(shared_data)
    ot = df["open_time"].to_numpy()
    cols = {c: df[c].to_numpy() for c in ("open", "high", "low", "close", "volume")}
    times, agg = resample_arrays(ot, cols, 300_000, target_ms)
    # Independent reference with pandas groupby.
    g = df.assign(bucket=df["open_time"] // target_ms * target_ms).groupby("bucket")
    ref = g.agg(
        open=("open", "first"),
        high=("high", "max"),
        low=("low", "min"),
        close=("close", "last"),
        volume=("volume", "sum"),
        n=("open", "size"),
    )
    ref = ref[ref["n"] == target_ms // 300_000]
    assert times.tolist() == ref.index.tolist()
    assert int(times[0]) % target_ms == 0 and int(times[0]) > int(ot[0])  # partial first dropped
    for c in ("open", "high", "low", "close"):
        np.testing.assert_array_equal(agg[c], ref[c].to_numpy())
    np.testing.assert_allclose(agg["volume"], ref["volume"].to_numpy(), rtol=1e-12)


def test_contiguous_and_general_paths_agree(shared_data: Path) -> None:
    df = load_candles(shared_data)[13:5000]
    ot = df["open_time"].to_numpy()
    cols = {c: df[c].to_numpy() for c in ("open", "high", "low", "close", "volume")}
    t1, a1 = resample_arrays(ot, cols, 300_000, 3_600_000)
    # Same data behind a hole far away forces the general path on the same buckets.
    ot2 = np.append(ot, ot[-1] + 10 * 3_600_000)
    cols2 = {k: np.append(v, v[-1]) for k, v in cols.items()}
    t2, a2 = resample_arrays(ot2, cols2, 300_000, 3_600_000)
    np.testing.assert_array_equal(t1, t2)
    for k in cols:
        np.testing.assert_array_equal(a1[k], a2[k])


def test_rejects_non_multiple() -> None:
    with pytest.raises(ValueError):
        resample_arrays(np.arange(3, dtype=np.int64) * 300_000, {}, 300_000, 420_000)
