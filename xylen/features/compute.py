"""Batch feature computation: numpy + TA-Lib, float32 output, no pandas in the kernel.

The kernel :func:`feature_block` computes every feature for the output rows
``start .. n-1`` of a candle series: TA-Lib runs over the whole input (its state needs
the history), the numpy work only over the output rows.  The batch path uses
``start = 0``; the incremental path (:mod:`xylen.features.incremental`) uses the same
kernel with ``start = n - 1``, so both evaluate literally the same formulas.

Higher-timeframe (HTF) features: base candles are aggregated to complete 15m / 1h
buckets (:mod:`xylen.features.timeframes`), indicators run on those, and a base row
sees the value of the last HTF candle whose close time is <= the row's close time
(the 1h candle opened 09:00 is visible from the 5m row opened 09:55 onwards); see
:mod:`xylen.features.htf`.

Speed: the TA-Lib calls are the floor.  The numpy work after them runs in chunks of
:data:`CHUNK` rows through two small scratch rows straight into the float32 output, so no
full-length float64 temporary is allocated (fresh large allocations cost page faults).
A caller computing many series of one length can pass ``out=`` to :func:`feature_block`
and reuse one block: the fresh float32 block alone (168 MB for a million rows) costs
~20 ms of page faults per call.  Long series are computed on two threads (:data:`LANES`,
:data:`PARALLEL_MIN_ROWS`): TA-Lib is then called through :mod:`xylen.features.talib_c`,
which releases the GIL and gives the binding's values bit for bit.
Zero denominators (zero volume, constant prices) give the values documented in
:mod:`xylen.features.spec`, never inf/NaN after the warm-up.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Final, Literal

import numpy as np
import numpy.typing as npt
import talib

from xylen.data.schema import interval_ms
from xylen.errors import DataError, UsageError
from xylen.features import spec as S
from xylen.features import talib_c as T
from xylen.features.htf import htf_block, time_features

if TYPE_CHECKING:  # pandas is imported where a DataFrame is built: the array path never loads it
    import pandas as pd

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

_SMA = talib.MA_Type.SMA  # type: ignore[attr-defined]
_INPUT = ("open_time", "open", "high", "low", "close", "volume")
_SAME: Final[Literal["same_kind"]] = "same_kind"
_MAX_VOLUME_REACH: Final = 2 * S.VOLUME_MOM_PERIOD + S.VOLUME_Z_PERIOD  # farthest volume row a feature reads
PARALLEL_MIN_ROWS: Final = 100_000  # output rows from which a second thread pays for itself
# The kernel's parts in two lanes of about equal time (the second also writes the calendar and
# HTF rows); with two threads each lane runs on its own, every part writing its own rows.
LANES: Final = (
    ("talib_direct", "ema_dists", "macd", "bbands"),
    ("atr", "obv", "candle_shape", "returns", "volume"),
)
CHUNK: Final = 32_768  # rows per chunk of numpy post-processing (scratch rows stay in L2)


def as_arrays(candles: pd.DataFrame | Mapping[str, npt.ArrayLike]) -> dict[str, npt.NDArray[np.generic]]:
    """open_time (int64) and OHLCV (float64, contiguous) arrays from a frame or a mapping."""
    out: dict[str, npt.NDArray[np.generic]] = {}
    for name in _INPUT:
        if name not in candles:
            raise DataError(f"candles lack column {name!r}")
        col = candles[name]
        to_numpy = getattr(col, "to_numpy", None)  # a pandas Series; arrays and lists go to asarray
        raw = to_numpy() if callable(to_numpy) else np.asarray(col)
        dtype = np.int64 if name == "open_time" else np.float64
        out[name] = np.ascontiguousarray(raw, dtype=dtype)
    return out


def check_open_time(open_time: I64, base_ms: int) -> bool:
    """Validate order and alignment; return True when the series has no holes."""
    n = len(open_time)
    if n == 0:
        return True
    if n > 1:
        if _steps_equal(open_time, base_ms):
            if int(open_time[0]) % base_ms:
                raise DataError(f"open times are not aligned to the {base_ms} ms interval")
            return True
        if not bool(np.all(np.diff(open_time) > 0)):
            raise DataError("open times are not strictly increasing")
    if bool(np.any(open_time % base_ms)):
        raise DataError(f"open times are not aligned to the {base_ms} ms interval")
    return n == 1


def _steps_equal(open_time: I64, base_ms: int) -> bool:
    """open_time[i + 1] - open_time[i] == base_ms for every i, chunk by chunk (no full diff)."""
    n = len(open_time) - 1
    step = np.empty(min(CHUNK, n), dtype=np.int64)
    same = np.empty(len(step), dtype=np.bool_)
    for a, b in _chunks(0, n):
        d, e = step[: b - a], same[: b - a]
        np.subtract(open_time[a + 1 : b + 1], open_time[a:b], out=d)
        if not np.equal(d, base_ms, out=e).all():
            return False
    return True


def _chunks(first: int, m: int) -> Iterator[tuple[int, int]]:
    """Row ranges [a, b) of at most CHUNK rows covering first..m-1."""
    for a in range(first, m, CHUNK):
        yield a, min(a + CHUNK, m)


def _zero_fill(dst: F32, den: F64, fill: float, zero: npt.NDArray[np.bool_]) -> None:
    """dst = fill where den == 0 (a defined value instead of inf/NaN); NaN den stays NaN."""
    np.equal(den, 0.0, out=zero)
    if zero.any():
        np.copyto(dst, fill, where=zero)


def _zero_runs(v: F64, first: int) -> tuple[I64, I64]:
    """Start and end (exclusive) input rows of the runs of zero volume at or after ``first``."""
    idx = np.flatnonzero(v[first:] == 0.0)
    if len(idx) == 0:
        return idx, idx
    idx += first
    breaks = np.flatnonzero(np.diff(idx) != 1)
    starts = np.concatenate((idx[:1], idx[breaks + 1]))
    ends = np.concatenate((idx[breaks], idx[-1:])) + 1
    return starts, ends


class _Kernel:
    """Writes the base features of rows ``start..n-1`` into the rows of ``out``.

    TA-Lib runs on the full arrays; everything after it works on chunks of at most
    :data:`CHUNK` rows in a few small float64 scratch rows (they stay in cache; the TA-Lib
    outputs are only read) and writes straight into the float32 output: no full-length
    float64 temporaries.
    """

    def __init__(
        self,
        arr: Mapping[str, npt.NDArray[np.generic]],
        start: int,
        out: F32,
        names: list[str],
        ta: T.Functions = T.BINDING,
    ):
        self.ta = ta
        # rows for TA-Lib's outputs, reused by every call of this lane (fresh 8 MB arrays per
        # call would each cost their page faults): a part uses them and is done with them
        self.tmp: F64 = np.empty((3, len(arr["close"])), dtype=np.float64)
        self.o: F64 = arr["open"]  # type: ignore[assignment]
        self.h: F64 = arr["high"]  # type: ignore[assignment]
        self.lo: F64 = arr["low"]  # type: ignore[assignment]
        self.c: F64 = arr["close"]  # type: ignore[assignment]
        self.v: F64 = arr["volume"]  # type: ignore[assignment]
        self.start = start
        self.m = len(self.c) - start
        self.col = {name: out[i] for i, name in enumerate(names)}
        width = min(CHUNK, self.m)
        self.scr: F64 = np.empty((2, width), dtype=np.float64)
        self.zero: npt.NDArray[np.bool_] = np.empty(width, dtype=np.bool_)
        self.zero_runs = _zero_runs(self.v, max(start - _MAX_VOLUME_REACH, 0))

    def silence(self, name: str, k: int, lag: int = 0) -> None:
        """Set ``name`` to 0 on the rows whose k-bar volume window ending ``lag`` bars back is all zero.

        TA-Lib's running sums leave round-off residue (not an exact 0) over such a window, so
        the ratio would be noise that differs between the batch and the newest-row path.
        """
        runs0, runs1 = self.zero_runs
        for r0, r1 in zip(runs0.tolist(), runs1.tolist(), strict=True):
            a = max(r0 + k - 1 + lag - self.start, 0)
            b = min(r1 + lag - self.start, self.m)
            if a < b:  # NaN (a warm-up row) stays NaN
                seg = self.col[name][a:b]
                np.copyto(seg, 0.0, where=seg == seg)

    def run(self, parts: tuple[str, ...]) -> None:
        with np.errstate(divide="ignore", invalid="ignore"):
            for part in parts:
                getattr(self, part)()

    def lagged(self, x: F64, k: int, a: int, b: int) -> F64:
        """x at rows a-k .. b-k (output row coordinates); requires start + a >= k."""
        return x[self.start + a - k : self.start + b - k]

    def nan_head(self, name: str, k: int) -> int:
        """NaN the rows whose k-bar lag is before the input; return the first defined row."""
        first = min(max(k - self.start, 0), self.m)
        self.col[name][:first] = np.nan
        return first

    def talib_direct(self) -> None:
        c, h, lo, s, ta, t = self.c, self.h, self.lo, self.start, self.ta, self.tmp[0]
        for p in S.RSI_PERIODS:
            np.copyto(self.col[f"rsi_{p}"], ta.RSI(c, p, out=t)[s:], casting=_SAME)
        np.copyto(self.col["adx_14"], ta.ADX(h, lo, c, S.ADX_PERIOD, out=t)[s:], casting=_SAME)
        np.copyto(self.col["plus_di_14"], ta.PLUS_DI(h, lo, c, S.ADX_PERIOD, out=t)[s:], casting=_SAME)
        np.copyto(self.col["minus_di_14"], ta.MINUS_DI(h, lo, c, S.ADX_PERIOD, out=t)[s:], casting=_SAME)

    def ema_dists(self) -> None:
        cs = self.c[self.start :]
        for p in S.EMA_PERIODS:
            ema = self.ta.EMA(self.c, p, out=self.tmp[0])[self.start :]
            dst = self.col[f"ema_{p}_dist"]
            for a, b in _chunks(0, self.m):
                t = self.scr[0, : b - a]
                np.divide(cs[a:b], ema[a:b], out=t)
                np.subtract(t, 1.0, out=dst[a:b], casting=_SAME)

    def macd(self) -> None:
        cs = self.c[self.start :]
        macd = self.ta.MACD(self.c, S.MACD_FAST, S.MACD_SLOW, S.MACD_SIGNAL, out=tuple(self.tmp))
        for name, series in zip(("macd_line", "macd_signal", "macd_hist"), macd, strict=True):
            np.divide(series[self.start :], cs, out=self.col[name], casting=_SAME)

    def bbands(self) -> None:
        cs, col = self.c[self.start :], self.col
        bands = self.ta.BBANDS(self.c, S.BB_PERIOD, S.BB_NBDEV, S.BB_NBDEV, _SMA, out=tuple(self.tmp))
        upper, middle, lower = (x[self.start :] for x in bands)
        for a, b in _chunks(0, self.m):
            up, mid, low, cc = upper[a:b], middle[a:b], lower[a:b], cs[a:b]
            width, num = self.scr[0, : b - a], self.scr[1, : b - a]
            np.subtract(up, low, out=width)
            np.divide(width, mid, out=col["bb_width"][a:b], casting=_SAME)
            np.subtract(cc, low, out=num)
            np.divide(num, width, out=col["bb_pctb"][a:b], casting=_SAME)
            _zero_fill(col["bb_pctb"][a:b], width, 0.5, self.zero[: b - a])
            for name, band in (("bb_upper_dist", up), ("bb_middle_dist", mid), ("bb_lower_dist", low)):
                np.divide(cc, band, out=num)
                np.subtract(num, 1.0, out=col[name][a:b], casting=_SAME)

    def atr(self) -> None:
        cs, col, k = self.c[self.start :], self.col, S.PRICE_MOM_PERIOD
        atr = self.ta.ATR(self.h, self.lo, self.c, S.ATR_PERIOD, out=self.tmp[0])[self.start :]
        np.divide(atr, cs, out=col["atr_14_rel"], casting=_SAME)
        dst = col["price_mom_12"]
        for a, b in _chunks(self.nan_head("price_mom_12", k), self.m):
            d = self.scr[0, : b - a]
            np.subtract(cs[a:b], self.lagged(self.c, k, a, b), out=d)
            np.divide(d, atr[a:b], out=dst[a:b], casting=_SAME)
            _zero_fill(dst[a:b], atr[a:b], 0.0, self.zero[: b - a])

    def obv(self) -> None:
        """obv_flow_20 and obv_slope_14 in one pass; both divide by SUM(volume, 20)."""
        col, k, s = self.col, S.OBV_FLOW_PERIOD, self.start
        obv = self.ta.OBV(self.c, self.v, out=self.tmp[0])
        vsum = self.ta.SUM(self.v, S.OBV_FLOW_PERIOD, out=self.tmp[1])[s:]
        slope = self.ta.LINEARREG_SLOPE(obv, S.OBV_SLOPE_PERIOD, out=self.tmp[2])[s:]
        flow, slope_dst = col["obv_flow_20"], col["obv_slope_14"]
        first = self.nan_head("obv_flow_20", k)
        for a, b in _chunks(0, self.m):
            t, zero, den = self.scr[0, : b - a], self.zero[: b - a], vsum[a:b]
            np.equal(den, 0.0, out=zero)
            flat = bool(zero.any())
            np.multiply(slope[a:b], float(S.OBV_FLOW_PERIOD), out=t)
            np.divide(t, den, out=slope_dst[a:b], casting=_SAME)
            if flat:
                np.copyto(slope_dst[a:b], 0.0, where=zero)
            if b <= first:
                continue
            a1 = max(a, first)  # rows whose 20-bar OBV lag is inside the input
            t, zero1 = self.scr[0, : b - a1], zero[a1 - a :]
            np.subtract(obv[s + a1 : s + b], self.lagged(obv, k, a1, b), out=t)
            np.divide(t, den[a1 - a :], out=flow[a1:b], casting=_SAME)
            if flat:
                np.copyto(flow[a1:b], 0.0, where=zero1)
        self.silence("obv_flow_20", S.OBV_FLOW_PERIOD)
        self.silence("obv_slope_14", S.OBV_FLOW_PERIOD)

    def candle_shape(self) -> None:
        """Body and shadow ratios; a flat candle (high == low) gives 0 for all three."""
        s, col = self.start, self.col
        o, h, lo, c = self.o[s:], self.h[s:], self.lo[s:], self.c[s:]
        for a, b in _chunks(0, self.m):
            rng, t, zero = self.scr[0, : b - a], self.scr[1, : b - a], self.zero[: b - a]
            np.subtract(h[a:b], lo[a:b], out=rng)
            np.equal(rng, 0.0, out=zero)
            if zero.any():  # flat: every numerator is 0, and 0 / inf = 0
                np.copyto(rng, np.inf, where=zero)
            np.subtract(c[a:b], o[a:b], out=t)
            np.divide(t, rng, out=col["body_ratio"][a:b], casting=_SAME)
            np.maximum(o[a:b], c[a:b], out=t)
            np.subtract(h[a:b], t, out=t)
            np.divide(t, rng, out=col["upper_shadow_ratio"][a:b], casting=_SAME)
            np.minimum(o[a:b], c[a:b], out=t)
            np.subtract(t, lo[a:b], out=t)
            np.divide(t, rng, out=col["lower_shadow_ratio"][a:b], casting=_SAME)

    def returns(self) -> None:
        """log_ret_k and realised_vol_20 from one log(close) per chunk (no full-length log)."""
        s, n, reach = self.start, len(self.c), max(S.LOG_RETURN_LAGS)
        firsts = {k: self.nan_head(f"log_ret_{k}", k) for k in S.LOG_RETURN_LAGS}
        r2 = self.tmp[0, : max(n - 1, 0)]  # r2[j] = (log c[j+1] - log c[j]) ** 2
        logs = np.empty(min(CHUNK, n) + reach, dtype=np.float64)
        for a0, b0 in _chunks(0, n):  # input rows; log c of rows lo..b0-1 in logs[: b0 - lo]
            lo = max(a0 - reach, 0)
            lc = np.log(self.c[lo:b0], out=logs[: b0 - lo])
            j = max(a0, 1)
            d = r2[j - 1 : b0 - 1]
            np.subtract(lc[j - lo :], lc[j - 1 - lo : b0 - 1 - lo], out=d)
            for k in S.LOG_RETURN_LAGS:  # output rows a..b-1 whose input row is in a0..b0-1
                a, b = max(a0 - s, firsts[k]), b0 - s
                if a >= b:
                    continue
                dst = self.col[f"log_ret_{k}"][a:b]
                if k == 1:  # the 1-bar difference is already in d: only the cast is left
                    np.copyto(dst, r2[s + a - 1 : b0 - 1], casting=_SAME)
                else:
                    np.subtract(
                        lc[s + a - lo : b0 - lo], lc[s + a - k - lo : b0 - k - lo], out=dst, casting=_SAME
                    )
            np.multiply(d, d, out=d)
        ssq = self.ta.SUM(r2, S.REALISED_VOL_PERIOD, out=self.tmp[1, : len(r2)])  # ssq[j]: row j + 1
        dst = self.col["realised_vol_20"]
        first = self.nan_head("realised_vol_20", 1)
        for a, b in _chunks(first, self.m):
            t = self.scr[0, : b - a]
            np.multiply(ssq[s + a - 1 : s + b - 1], 1.0 / S.REALISED_VOL_PERIOD, out=t)
            np.sqrt(t, out=dst[a:b], casting=_SAME)

    def volume(self) -> None:
        s, col, k = self.start, self.col, S.VOLUME_MOM_PERIOD
        vsum = self.ta.SUM(self.v, S.VOLUME_MOM_PERIOD, out=self.tmp[0])
        dst = col["volume_mom_12"]
        for a, b in _chunks(self.nan_head("volume_mom_12", k), self.m):
            t, den = self.scr[0, : b - a], self.lagged(vsum, k, a, b)
            np.divide(vsum[s + a : s + b], den, out=t)
            np.subtract(t, 1.0, out=dst[a:b], casting=_SAME)
            _zero_fill(dst[a:b], den, 0.0, self.zero[: b - a])
        self.silence("volume_mom_12", k, lag=k)
        vs = self.v[s:]
        sma = self.ta.SMA(self.v, S.VOLUME_Z_PERIOD, out=self.tmp[1])[s:]
        std = self.ta.STDDEV(self.v, S.VOLUME_Z_PERIOD, 1.0, out=self.tmp[2])[s:]
        dst = col["volume_z_20"]
        for a, b in _chunks(0, self.m):
            t = self.scr[0, : b - a]
            np.subtract(vs[a:b], sma[a:b], out=t)
            np.divide(t, std[a:b], out=dst[a:b], casting=_SAME)
            _zero_fill(dst[a:b], std[a:b], 0.0, self.zero[: b - a])
        self.silence("volume_z_20", S.VOLUME_Z_PERIOD)


def default_threads(rows: int) -> int:
    """Threads :func:`feature_block` takes for ``rows`` output rows when not told (its docstring)."""
    if rows >= PARALLEL_MIN_ROWS and T.usable_cores() >= 2 and T.library() is not None:
        return 2
    return 1


def feature_block(
    arr: Mapping[str, npt.NDArray[np.generic]],
    base_interval: str = "5m",
    start: int = 0,
    contiguous: bool | None = None,
    out: F32 | None = None,
    threads: int | None = None,
) -> F32:
    """Features of rows ``start..n-1`` as a C-ordered ``(n_features, n - start)`` float32 block.

    ``arr`` holds int64 ``open_time`` and float64 contiguous OHLCV (see :func:`as_arrays`).
    ``out``, if given, is a C-contiguous float32 block of that shape which is overwritten and
    returned: a caller computing many series of one length can reuse one block instead of
    paying for a fresh allocation (page faults) on every call.
    ``threads``: 1, or 2 (more count as 2) to compute the two halves of :data:`LANES` side by
    side; ``None`` takes 2 from :data:`PARALLEL_MIN_ROWS` output rows when TA-Lib runs without
    the GIL (:mod:`xylen.features.talib_c`) and two cores are free.  The values are the same.
    """
    base_ms = interval_ms(base_interval)
    specs = S.feature_specs(base_interval)
    ot: I64 = arr["open_time"]  # type: ignore[assignment]
    if contiguous is None:
        contiguous = check_open_time(ot, base_ms)
    m = len(ot) - start
    shape = (len(specs), m)
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    elif out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise UsageError(
            f"out must be a C-contiguous float32 array of shape {shape}, "
            f"got {out.dtype} {out.shape}{'' if out.flags.c_contiguous else ' (not C-contiguous)'}"
        )
    if m <= 0:
        return out
    if threads is None:
        threads = default_threads(m)
    elif threads < 1:
        raise UsageError(f"threads must be 1 or more, got {threads}")
    names = [s.name for s in specs]
    t0 = next(i for i, s in enumerate(specs) if s.name == "hour_sin")
    h0 = next(i for i, s in enumerate(specs) if s.kind == "htf")

    # Long inputs: TA-Lib's C library directly (the GIL released; outputs into the lanes' reused
    # rows without a copy).  Short ones (the newest row): the binding, less overhead per call.
    ta = T.gil_free_functions() if len(ot) >= PARALLEL_MIN_ROWS else T.BINDING

    def lane(parts: tuple[str, ...], calendar_and_htf: bool) -> None:
        _Kernel(arr, start, out, names, ta).run(parts)
        if calendar_and_htf:
            time_features(ot, start, base_ms, contiguous, out[t0 : t0 + 4])
            htf_block(arr, start, base_ms, contiguous, out[h0:], ta)

    if threads <= 1:
        lane(LANES[0] + LANES[1], True)
        return out
    with ThreadPoolExecutor(1, thread_name_prefix="xylen-features") as pool:
        second = pool.submit(lane, LANES[1], True)
        try:
            lane(LANES[0], False)
        finally:
            second.result()  # waits for the other lane; its error, if any, is raised here
    return out


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
    import pandas as pd

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
