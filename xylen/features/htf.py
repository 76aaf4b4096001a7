"""Calendar and higher-timeframe (HTF) columns of the feature block.

Both write straight into rows of the preallocated float32 block: the calendar columns
by block copies of a one-week table, the HTF columns by repeating each HTF value over
the base rows that see it.  A base row sees the value of the last HTF candle whose
close time is <= the row's close time (the 1h candle opened 09:00 is visible from the
5m row opened 09:55 onwards).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
import talib

from xylen.data.schema import interval_ms
from xylen.features import spec as S
from xylen.features.timeframes import contiguous_layout, resample_arrays, resample_contiguous

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

_MONDAY_MS = 4 * S.DAY_MS  # 1970-01-05 00:00 UTC, the first Monday after the epoch


def _fill_steps(col: F32, vals: F32, first: int, n_per: int) -> None:
    """col[first + j*n_per : first + (j+1)*n_per] = vals[j]; NaN before ``first``."""
    size = len(col)
    if first > 0:
        col[: min(first, size)] = np.nan
    if first >= size or len(vals) == 0:
        if first < size:
            col[max(first, 0) :] = np.nan
        return
    j = 0 if first >= 0 else (-first) // n_per
    pos = first + j * n_per
    if pos < 0:
        end = min(pos + n_per, size)
        col[:end] = vals[j]
        j, pos = j + 1, pos + n_per
    if pos >= size:
        return
    full = min((size - pos) // n_per, len(vals) - j)
    steps = col[pos : pos + full * n_per].reshape(full, n_per)
    if n_per <= 4:  # a few long strided copies beat a broadcast with a tiny inner loop
        for k in range(n_per):
            steps[:, k] = vals[j : j + full]
    else:
        steps[:] = vals[j : j + full, None]
    pos, j = pos + full * n_per, j + full
    if pos < size:
        col[pos:] = vals[min(j, len(vals) - 1)]


def _fill_periodic(col: F32, table: F32, phase: int) -> None:
    """col[i] = table[(phase + i) % len(table)] with block copies."""
    size, period = len(col), len(table)
    head = min(period - phase, size)
    col[:head] = table[phase : phase + head]
    full = (size - head) // period
    col[head : head + full * period].reshape(full, period)[:] = table
    rest = size - head - full * period
    col[size - rest :] = table[:rest]


def time_features(ot: I64, start: int, base_ms: int, contiguous: bool, cols: F32) -> None:
    """hour_sin, hour_cos, dow_sin, dow_cos into the four rows of ``cols``."""
    rows = ot[start:]
    if S.DAY_MS % base_ms == 0:
        per_day = S.DAY_MS // base_ms
        k = np.arange(7 * per_day, dtype=np.int64)
        tables = _time_values((k % per_day) * base_ms, k // per_day)
        if contiguous and len(rows) > len(k):
            phase = int((rows[0] - _MONDAY_MS) % S.WEEK_MS) // base_ms
            for i in range(4):
                _fill_periodic(cols[i], tables[i], phase)
        else:
            widx = ((rows - _MONDAY_MS) % S.WEEK_MS) // base_ms
            np.take(tables, widx, axis=1, out=cols)
        return
    cols[:] = _time_values(rows % S.DAY_MS, ((rows - _MONDAY_MS) % S.WEEK_MS) // S.DAY_MS)


def _time_values(tod_ms: I64, weekday: I64) -> F32:
    hour_angle = (2.0 * np.pi / S.DAY_MS) * tod_ms
    dow_angle = (2.0 * np.pi / 7.0) * weekday
    return np.stack([np.sin(hour_angle), np.cos(hour_angle), np.sin(dow_angle), np.cos(dow_angle)]).astype(
        np.float32
    )


def _htf_values(h: F64, lo: F64, c: F64) -> tuple[F32, F32, F32]:
    """RSI, EMA distance and relative ATR of one higher-timeframe series (float32)."""
    rsi = talib.RSI(c, S.HTF_RSI_PERIOD)
    ema = talib.EMA(c, S.HTF_EMA_PERIOD)
    atr = talib.ATR(h, lo, c, S.HTF_ATR_PERIOD)
    np.divide(c, ema, out=ema)
    np.subtract(ema, 1.0, out=ema)
    np.divide(atr, c, out=atr)
    return rsi.astype(np.float32), ema.astype(np.float32), atr.astype(np.float32)


def htf_block(
    arr: Mapping[str, npt.NDArray[np.generic]],
    start: int,
    base_ms: int,
    contiguous: bool,
    out: F32,
) -> None:
    """The 3 x len(HIGHER_TIMEFRAMES) HTF rows of ``out`` (in spec order)."""
    ot: I64 = arr["open_time"]  # type: ignore[assignment]
    n = len(ot)
    prev: tuple[int, I64, dict[str, F64]] | None = None
    row = 0
    for tf in S.HIGHER_TIMEFRAMES:
        target = interval_ms(tf)
        n_per = target // base_ms
        src_ms, src_t = base_ms, ot
        src: dict[str, F64] = {k: arr[k] for k in ("high", "low", "close")}  # type: ignore[misc]
        if contiguous and prev is not None and target % prev[0] == 0:
            src_ms, src_t, src = prev  # 1h from complete 15m buckets: same buckets, less work
        if contiguous:
            times, agg = resample_contiguous(src_t, src, src_ms, target)
        else:
            times, agg = resample_arrays(src_t, src, src_ms, target)
        prev = (target, times, agg)
        vals = _htf_values(agg["high"], agg["low"], agg["close"])
        if contiguous:
            off, _ = contiguous_layout(int(ot[0]), n, base_ms, target)
            for v in vals:
                _fill_steps(out[row], v, off + n_per - 1 - start, n_per)
                row += 1
        else:
            idx = np.searchsorted(times + (target - 1), ot[start:] + (base_ms - 1), side="right")
            for v in vals:
                np.take(np.concatenate(([np.float32(np.nan)], v)), idx, out=out[row])
                row += 1
