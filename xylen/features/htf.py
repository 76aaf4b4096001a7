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

from xylen.data.schema import interval_ms
from xylen.features import spec as S
from xylen.features import talib_c as T
from xylen.features.timeframes import aggregate_contiguous, contiguous_layout, resample_arrays

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

_MONDAY_MS = 4 * S.DAY_MS  # 1970-01-05 00:00 UTC, the first Monday after the epoch
_FILL_CHUNK = 8192  # HTF values per chunk of _fill_steps


def _fill_steps(col: F32, vals: F64, first: int, n_per: int) -> None:
    """col[first + j*n_per : first + (j+1)*n_per] = float32(vals[j]); NaN before ``first``."""
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
    # In chunks: the float64 -> float32 cast goes once per value into a small scratch (a
    # strided assignment that also casts is several times slower), and the few strided
    # passes over a chunk of ``col`` find it still in cache.
    buf = np.empty(min(_FILL_CHUNK, full), dtype=np.float32)
    for a in range(0, full, _FILL_CHUNK):
        b = min(a + _FILL_CHUNK, full)
        v = buf[: b - a]
        np.copyto(v, vals[j + a : j + b], casting="same_kind")
        if n_per <= 4:  # a few strided copies beat a broadcast with a tiny inner loop
            for k in range(n_per):
                steps[a:b, k] = v
        else:
            steps[a:b] = v[:, None]
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


def _htf_values(h: F64, lo: F64, c: F64, ta: T.Functions) -> tuple[F64, F64, F64]:
    """RSI, EMA distance and relative ATR of one higher-timeframe series (float64; the
    writes into the float32 block round them, as a separate ``astype`` would)."""
    rsi = ta.RSI(c, S.HTF_RSI_PERIOD)
    ema = ta.EMA(c, S.HTF_EMA_PERIOD)
    atr = ta.ATR(h, lo, c, S.HTF_ATR_PERIOD)
    np.divide(c, ema, out=ema)
    np.subtract(ema, 1.0, out=ema)
    np.divide(atr, c, out=atr)
    return rsi, ema, atr


def htf_block(
    arr: Mapping[str, npt.NDArray[np.generic]],
    start: int,
    base_ms: int,
    contiguous: bool,
    out: F32,
    ta: T.Functions = T.BINDING,
) -> None:
    """The 3 x len(HIGHER_TIMEFRAMES) HTF rows of ``out`` (in spec order); TA-Lib through ``ta``."""
    ot: I64 = arr["open_time"]  # type: ignore[assignment]
    base: dict[str, F64] = {k: arr[k] for k in ("high", "low", "close")}  # type: ignore[misc]
    if not contiguous:
        _htf_rows_general(ot, base, start, base_ms, out, ta)
        return
    # Contiguous rows: bucket positions follow from the first open time alone.  The source
    # of a timeframe is (interval, first open time, rows, columns): the base rows, or the
    # previous timeframe's complete buckets when it divides this one (1h from 15m: the
    # same buckets, a quarter of the work).
    t0 = int(ot[0])
    src_ms, src_t0, src_n, src = base_ms, t0, len(ot), base
    row = 0
    for tf in S.HIGHER_TIMEFRAMES:
        target = interval_ms(tf)
        if target % src_ms:
            src_ms, src_t0, src_n, src = base_ms, t0, len(ot), base
        agg = aggregate_contiguous(src_t0, src_n, src, src_ms, target)
        off, m = contiguous_layout(src_t0, src_n, src_ms, target)
        src_ms, src_t0, src_n, src = target, src_t0 + off * src_ms, m, agg
        n_per = target // base_ms
        first = (src_t0 - t0) // base_ms + n_per - 1 - start  # the row closing with bucket 0
        for v in _htf_values(agg["high"], agg["low"], agg["close"], ta):
            _fill_steps(out[row], v, first, n_per)
            row += 1


def _htf_rows_general(
    ot: I64, base: dict[str, F64], start: int, base_ms: int, out: F32, ta: T.Functions
) -> None:
    """:func:`htf_block` for rows with holes: values mapped to rows by close time."""
    row = 0
    for tf in S.HIGHER_TIMEFRAMES:
        target = interval_ms(tf)
        times, agg = resample_arrays(ot, base, base_ms, target)
        idx = np.searchsorted(times + (target - 1), ot[start:] + (base_ms - 1), side="right")
        for v in _htf_values(agg["high"], agg["low"], agg["close"], ta):
            np.take(np.concatenate(([np.nan], v)).astype(np.float32), idx, out=out[row])
            row += 1
