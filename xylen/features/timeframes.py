"""Derive coarser candles (15m, 1h, any multiple) from base candles, with numpy only.

Buckets are aligned to UTC epoch multiples of the target interval.  A bucket is emitted
only when all ``N = target / base`` base candles are present: a partial first or last
bucket, or one with a hole, is dropped, never filled.  Aggregation: open = first open,
high = max, low = min, close = last close, volume-like columns and trades summed
(a NaN input column stays NaN), close_time = bucket start + target - 1.

Two paths give identical results: a contiguous fast path (strided views, no integer
division per row) and a general path (gathers at the complete buckets' start rows) for
data with holes; both accumulate in the same sequential order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from xylen.data.schema import CANDLE_COLUMNS, interval_ms, normalize_candles

if TYPE_CHECKING:  # only the frame path below needs pandas, imported there
    import pandas as pd

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

SUM_COLUMNS = ("volume", "quote_volume", "trades", "taker_buy_volume", "taker_buy_quote_volume")


def is_contiguous(open_time: I64, base_ms: int) -> bool:
    """True when ``open_time`` is aligned to ``base_ms`` and steps by exactly ``base_ms``."""
    n = len(open_time)
    if n == 0:
        return True
    if int(open_time[0]) % base_ms:
        return False
    return n == 1 or bool(np.all(np.diff(open_time) == base_ms))


def bucket_layout(open_time: I64, base_ms: int, target_ms: int) -> tuple[I64, I64]:
    """Start row and bucket open time of every complete bucket (general path)."""
    if target_ms % base_ms:
        raise ValueError(f"target interval {target_ms} ms is not a multiple of {base_ms} ms")
    n_per = target_ms // base_ms
    if len(open_time) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    if bool(np.any(open_time % base_ms)):
        raise ValueError("open times are not aligned to the base interval")
    bucket = open_time // target_ms
    change = np.empty(len(bucket), dtype=bool)
    change[0] = True
    np.not_equal(bucket[1:], bucket[:-1], out=change[1:])
    starts = np.flatnonzero(change)
    counts = np.diff(np.append(starts, len(bucket)))
    keep = counts == n_per  # sorted, unique, aligned: N rows in a bucket means all present
    starts = starts[keep]
    return starts.astype(np.int64), (bucket[starts] * target_ms).astype(np.int64)


def contiguous_layout(open_time0: int, n: int, base_ms: int, target_ms: int) -> tuple[int, int]:
    """For contiguous rows starting at ``open_time0``: (first bucket row, complete buckets)."""
    n_per = target_ms // base_ms
    offset = ((-open_time0) % target_ms) // base_ms
    return offset, max(0, (n - offset) // n_per)


def _strided_reduce(x: F64, offset: int, m: int, n_per: int, ufunc: np.ufunc, out: F64) -> None:
    """out[j] = x[offset + j*n_per] (ufunc) ... (ufunc) x[offset + j*n_per + n_per - 1], in that order."""
    end = offset + m * n_per
    if n_per == 1:
        np.copyto(out, x[offset:end])
        return
    ufunc(x[offset:end:n_per], x[offset + 1 : end : n_per], out=out)
    for k in range(2, n_per):
        ufunc(out, x[offset + k : end : n_per], out=out)


def aggregate_contiguous(
    open_time0: int,
    n: int,
    columns: Mapping[str, F64],
    base_ms: int,
    target_ms: int,
) -> dict[str, F64]:
    """The aggregated columns of :func:`resample_contiguous` for ``n`` contiguous rows from
    ``open_time0`` (bucket times not built).

    The columns are rows of one C-ordered block: one allocation instead of one per column
    (and, from 4 MB on, one numpy marks for huge pages, so far fewer page faults).
    """
    n_per = target_ms // base_ms
    offset, m = contiguous_layout(open_time0, n, base_ms, target_ms)
    end = offset + m * n_per
    out: dict[str, F64] = {}
    block = np.empty((len(columns), m), dtype=np.float64)
    for row, (name, col) in zip(block, columns.items(), strict=True):
        x = np.ascontiguousarray(col, dtype=np.float64)
        if name == "open":
            np.copyto(row, x[offset:end:n_per])
        elif name == "close":
            np.copyto(row, x[offset + n_per - 1 : end : n_per])
        elif name == "high":
            _strided_reduce(x, offset, m, n_per, np.maximum, row)
        elif name == "low":
            _strided_reduce(x, offset, m, n_per, np.minimum, row)
        elif name in SUM_COLUMNS:
            _strided_reduce(x, offset, m, n_per, np.add, row)
        else:
            raise ValueError(f"no aggregation rule for column {name!r}")
        out[name] = row
    return out


def resample_contiguous(
    open_time: I64,
    columns: Mapping[str, F64],
    base_ms: int,
    target_ms: int,
) -> tuple[I64, dict[str, F64]]:
    """:func:`resample_arrays` for rows already known to be contiguous (no re-check)."""
    if len(open_time) == 0:
        return np.empty(0, np.int64), {k: np.empty(0, np.float64) for k in columns}
    n_per = target_ms // base_ms
    offset, m = contiguous_layout(int(open_time[0]), len(open_time), base_ms, target_ms)
    times = open_time[offset : offset + m * n_per : n_per].copy()
    return times, aggregate_contiguous(int(open_time[0]), len(open_time), columns, base_ms, target_ms)


def resample_arrays(
    open_time: I64,
    columns: Mapping[str, F64],
    base_ms: int,
    target_ms: int,
) -> tuple[I64, dict[str, F64]]:
    """Aggregate base candles to ``target_ms``; returns bucket open times and columns.

    ``columns`` may hold any of open/high/low/close and the summed columns
    (:data:`SUM_COLUMNS`); each is aggregated by its own rule.  Input rows must be
    sorted by unique open time.
    """
    if target_ms % base_ms:
        raise ValueError(f"target interval {target_ms} ms is not a multiple of {base_ms} ms")
    n_per = target_ms // base_ms
    if is_contiguous(open_time, base_ms) and len(open_time):
        return resample_contiguous(open_time, columns, base_ms, target_ms)
    out: dict[str, F64] = {}
    starts, times = bucket_layout(open_time, base_ms, target_ms)
    for name, col in columns.items():
        x = np.ascontiguousarray(col, dtype=np.float64)
        if name == "open":
            out[name] = x[starts]
        elif name == "close":
            out[name] = x[starts + n_per - 1]
        elif name in ("high", "low") or name in SUM_COLUMNS:
            # Same sequential order as the contiguous path, so both give identical sums.
            ufunc = np.maximum if name == "high" else np.minimum if name == "low" else np.add
            acc: F64 = x[starts]
            for k in range(1, n_per):
                ufunc(acc, x[starts + k], out=acc)
            out[name] = acc
        else:
            raise ValueError(f"no aggregation rule for column {name!r}")
    return times, out


def resample_candles(frame: pd.DataFrame, base_interval: str, target_interval: str) -> pd.DataFrame:
    """Derive ``target_interval`` candles (schema frame) from a base-interval candle frame."""
    import pandas as pd

    base_ms, target_ms = interval_ms(base_interval), interval_ms(target_interval)
    frame = normalize_candles(frame, base_interval)
    cols = {
        c: frame[c].to_numpy(dtype=np.float64) for c in CANDLE_COLUMNS if c not in ("open_time", "close_time")
    }
    times, agg = resample_arrays(frame["open_time"].to_numpy(dtype=np.int64), cols, base_ms, target_ms)
    data: dict[str, npt.NDArray[np.generic]] = {"open_time": times}
    data.update(agg)
    data["close_time"] = times + (target_ms - 1)
    return pd.DataFrame({c: data[c] for c in CANDLE_COLUMNS})
