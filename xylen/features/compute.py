"""Batch feature computation: numpy + TA-Lib, float32 output, no pandas in the kernel.

The kernel :func:`feature_block` computes every feature for the output rows
``start .. n-1`` of a candle series: TA-Lib runs over the whole input (its state needs
the history), the numpy work only over the output rows.  The batch path uses
``start = 0``; the incremental path (:mod:`xylen.features.incremental`) uses the same
kernel with ``start = n - 1``, so both evaluate literally the same formulas.

Higher-timeframe (HTF) features: base candles are aggregated to complete 15m / 1h
buckets (:mod:`xylen.features.timeframes`), indicators run on those, and a base row
sees the value of the last HTF candle whose close time is <= the row's close time
(the 1h candle opened 09:00 is visible from the 5m row opened 09:55 onwards).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import talib

from xylen.data.schema import interval_ms
from xylen.errors import DataError
from xylen.features import spec as S
from xylen.features.timeframes import contiguous_layout, resample_arrays

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

_MONDAY_MS = 4 * S.DAY_MS  # 1970-01-05 00:00 UTC, the first Monday after the epoch
_SMA = talib.MA_Type.SMA  # type: ignore[attr-defined]
_INPUT = ("open_time", "open", "high", "low", "close", "volume")


def as_arrays(candles: pd.DataFrame | Mapping[str, npt.ArrayLike]) -> dict[str, npt.NDArray[np.generic]]:
    """open_time (int64) and OHLCV (float64, contiguous) arrays from a frame or a mapping."""
    out: dict[str, npt.NDArray[np.generic]] = {}
    for name in _INPUT:
        if name not in candles:
            raise DataError(f"candles lack column {name!r}")
        col = candles[name]
        raw = col.to_numpy() if isinstance(col, pd.Series) else np.asarray(col)
        dtype = np.int64 if name == "open_time" else np.float64
        out[name] = np.ascontiguousarray(raw, dtype=dtype)
    return out


def check_open_time(open_time: I64, base_ms: int) -> bool:
    """Validate order and alignment; return True when the series has no holes."""
    n = len(open_time)
    if n == 0:
        return True
    if n > 1:
        step = np.diff(open_time)
        if bool(np.all(step == base_ms)):
            if int(open_time[0]) % base_ms:
                raise DataError(f"open times are not aligned to the {base_ms} ms interval")
            return True
        if not bool(np.all(step > 0)):
            raise DataError("open times are not strictly increasing")
    if bool(np.any(open_time % base_ms)):
        raise DataError(f"open times are not aligned to the {base_ms} ms interval")
    return n == 1


def _shift(x: F64, k: int, start: int, op: np.ufunc, out: npt.NDArray[np.floating]) -> None:
    """out[i - start] = op(x[i], x[i - k]) for i >= start; NaN where i - k < 0."""
    n = len(x)
    first = min(max(start, k), n)
    out[: first - start] = np.nan
    op(x[first:], x[first - k : n - k], out=out[first - start :], casting="same_kind")


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
    col[pos : pos + full * n_per].reshape(full, n_per)[:] = vals[j : j + full, None]
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


def _time_features(ot: I64, start: int, base_ms: int, contiguous: bool, cols: F32) -> None:
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
    dist = c / ema
    dist -= 1.0
    return rsi.astype(np.float32), dist.astype(np.float32), (atr / c).astype(np.float32)


def _htf_block(
    arr: Mapping[str, npt.NDArray[np.generic]],
    start: int,
    base_ms: int,
    contiguous: bool,
    out: F32,
) -> None:
    """The 3 x len(HIGHER_TIMEFRAMES) HTF rows of ``out`` (in spec order)."""
    ot = arr["open_time"]
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
        times, agg = resample_arrays(src_t, src, src_ms, target)  # type: ignore[arg-type]
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


def feature_block(
    arr: Mapping[str, npt.NDArray[np.generic]],
    base_interval: str = "5m",
    start: int = 0,
    contiguous: bool | None = None,
) -> F32:
    """Features of rows ``start..n-1`` as a C-ordered ``(n_features, n - start)`` float32 block.

    ``arr`` holds int64 ``open_time`` and float64 contiguous OHLCV (see :func:`as_arrays`).
    """
    base_ms = interval_ms(base_interval)
    specs = S.feature_specs(base_interval)
    ot: I64 = arr["open_time"]  # type: ignore[assignment]
    o: F64 = arr["open"]  # type: ignore[assignment]
    h: F64 = arr["high"]  # type: ignore[assignment]
    lo: F64 = arr["low"]  # type: ignore[assignment]
    c: F64 = arr["close"]  # type: ignore[assignment]
    v: F64 = arr["volume"]  # type: ignore[assignment]
    n = len(ot)
    if contiguous is None:
        contiguous = check_open_time(ot, base_ms)
    m = n - start
    out = np.empty((len(specs), m), dtype=np.float32)
    if m <= 0:
        return out
    col = {s.name: out[i] for i, s in enumerate(specs)}
    tmp = np.empty(m, dtype=np.float64)
    tmp2 = np.empty(m, dtype=np.float64)
    cs, hs, ls, os_, vs = c[start:], h[start:], lo[start:], o[start:], v[start:]
    same: Literal["same_kind"] = "same_kind"
    with np.errstate(divide="ignore", invalid="ignore"):
        for p in S.RSI_PERIODS:
            col[f"rsi_{p}"][:] = talib.RSI(c, p)[start:]
        for p in S.EMA_PERIODS:
            np.divide(cs, talib.EMA(c, p)[start:], out=tmp)
            np.subtract(tmp, 1.0, out=col[f"ema_{p}_dist"], casting=same)
        inv_c = np.divide(1.0, cs)
        macd = talib.MACD(c, S.MACD_FAST, S.MACD_SLOW, S.MACD_SIGNAL)
        for name, series in zip(("macd_line", "macd_signal", "macd_hist"), macd, strict=True):
            np.multiply(series[start:], inv_c, out=col[name], casting=same)
        upper, middle, lower = (x[start:] for x in talib.BBANDS(c, S.BB_PERIOD, S.BB_NBDEV, S.BB_NBDEV, _SMA))
        for name, band in (("bb_upper_dist", upper), ("bb_middle_dist", middle), ("bb_lower_dist", lower)):
            np.divide(cs, band, out=tmp)
            np.subtract(tmp, 1.0, out=col[name], casting=same)
        np.subtract(upper, lower, out=tmp)
        np.divide(tmp, middle, out=col["bb_width"], casting=same)
        np.subtract(cs, lower, out=tmp2)
        np.divide(tmp2, tmp, out=col["bb_pctb"], casting=same)
        atr = talib.ATR(h, lo, c, S.ATR_PERIOD)
        col["atr_14"][:] = atr[start:]
        np.multiply(atr[start:], inv_c, out=col["atr_14_rel"], casting=same)
        obv = talib.OBV(c, v)
        vsum = talib.SUM(v, S.OBV_FLOW_PERIOD)[start:]
        _shift(obv, S.OBV_FLOW_PERIOD, start, np.subtract, tmp)
        np.divide(tmp, vsum, out=col["obv_flow_20"], casting=same)
        np.divide(talib.LINEARREG_SLOPE(obv, S.OBV_SLOPE_PERIOD)[start:], vsum, out=tmp)
        np.multiply(tmp, float(S.OBV_FLOW_PERIOD), out=col["obv_slope_14"], casting=same)
        col["adx_14"][:] = talib.ADX(h, lo, c, S.ADX_PERIOD)[start:]
        col["plus_di_14"][:] = talib.PLUS_DI(h, lo, c, S.ADX_PERIOD)[start:]
        col["minus_di_14"][:] = talib.MINUS_DI(h, lo, c, S.ADX_PERIOD)[start:]
        _candle_shape(os_, hs, ls, cs, tmp, tmp2, col)
        log_c = np.log(c)
        for k in S.LOG_RETURN_LAGS:
            _shift(log_c, k, start, np.subtract, col[f"log_ret_{k}"])
        _shift(c, S.PRICE_MOM_PERIOD, start, np.subtract, tmp)
        np.divide(tmp, atr[start:], out=col["price_mom_12"], casting=same)
        _shift(talib.SUM(v, S.VOLUME_MOM_PERIOD), S.VOLUME_MOM_PERIOD, start, np.divide, tmp)
        np.subtract(tmp, 1.0, out=col["volume_mom_12"], casting=same)
        np.subtract(vs, talib.SMA(v, S.VOLUME_Z_PERIOD)[start:], out=tmp)
        np.divide(tmp, talib.STDDEV(v, S.VOLUME_Z_PERIOD, 1.0)[start:], out=col["volume_z_20"], casting=same)
        _realised_vol(log_c, start, tmp, col["realised_vol_20"])
    t0 = next(i for i, s in enumerate(specs) if s.name == "hour_sin")
    _time_features(ot, start, base_ms, contiguous, out[t0 : t0 + 4])
    h0 = next(i for i, s in enumerate(specs) if s.kind == "htf")
    _htf_block(arr, start, base_ms, contiguous, out[h0:])
    return out


def _candle_shape(o: F64, h: F64, lo: F64, c: F64, tmp: F64, tmp2: F64, col: dict[str, F32]) -> None:
    """Body and shadow ratios; a flat candle (high == low) gives 0 for all three."""
    rng = np.subtract(h, lo)
    inv = np.zeros_like(rng)
    np.divide(1.0, rng, out=inv, where=rng > 0)
    np.subtract(c, o, out=tmp)
    np.multiply(tmp, inv, out=col["body_ratio"], casting="same_kind")
    np.maximum(o, c, out=tmp)
    np.subtract(h, tmp, out=tmp)
    np.multiply(tmp, inv, out=col["upper_shadow_ratio"], casting="same_kind")
    np.minimum(o, c, out=tmp2)
    np.subtract(tmp2, lo, out=tmp2)
    np.multiply(tmp2, inv, out=col["lower_shadow_ratio"], casting="same_kind")


def _realised_vol(log_c: F64, start: int, tmp: F64, dst: F32) -> None:
    """sqrt(mean of the last 20 squared 1-bar log returns); row i uses returns 1..i."""
    r = np.diff(log_c)
    np.multiply(r, r, out=r)
    ssq = talib.SUM(r, S.REALISED_VOL_PERIOD)  # ssq[j] belongs to row j + 1
    if start == 0:
        dst[0] = np.nan
        np.multiply(ssq, 1.0 / S.REALISED_VOL_PERIOD, out=tmp[1:])
        np.sqrt(tmp[1:], out=dst[1:], casting="same_kind")
    else:
        np.multiply(ssq[start - 1 :], 1.0 / S.REALISED_VOL_PERIOD, out=tmp)
        np.sqrt(tmp, out=dst, casting="same_kind")


def compute_feature_matrix(candles: pd.DataFrame | Mapping[str, npt.ArrayLike], interval: str = "5m") -> F32:
    """All features as an ``(n_rows, n_features)`` float32 array (a transposed C block)."""
    return feature_block(as_arrays(candles), interval).T


def compute_features(
    candles: pd.DataFrame | Mapping[str, npt.ArrayLike], interval: str = "5m"
) -> pd.DataFrame:
    """Feature frame: ``open_time`` (int64) then the float32 features in spec order.

    Rows are the input candles, one for one, keyed by ``open_time`` (RangeIndex).
    """
    arr = as_arrays(candles)
    block = feature_block(arr, interval)
    names = [s.name for s in S.feature_specs(interval)]
    frame = pd.DataFrame(block.T, columns=names, copy=False)
    open_time: I64 = arr["open_time"]  # type: ignore[assignment]
    frame.insert(0, "open_time", open_time)  # type: ignore[arg-type]
    return frame


def raw_indicators(candles: pd.DataFrame | Mapping[str, npt.ArrayLike]) -> dict[str, F64]:
    """Unnormalised float64 TA-Lib values (EMAs, MACD, bands, OBV) for inspection/plots."""
    arr = as_arrays(candles)
    c: F64 = arr["close"]  # type: ignore[assignment]
    v: F64 = arr["volume"]  # type: ignore[assignment]
    out = {f"ema_{p}": talib.EMA(c, p) for p in S.EMA_PERIODS}
    macd = talib.MACD(c, S.MACD_FAST, S.MACD_SLOW, S.MACD_SIGNAL)
    out.update(zip(("macd_line", "macd_signal", "macd_hist"), macd, strict=True))
    bands = talib.BBANDS(c, S.BB_PERIOD, S.BB_NBDEV, S.BB_NBDEV, _SMA)
    out.update(zip(("bb_upper", "bb_middle", "bb_lower"), bands, strict=True))
    out["obv"] = talib.OBV(c, v)
    return out
