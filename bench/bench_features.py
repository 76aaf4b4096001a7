"""Benchmark of the feature engine on 1,000,000 5m candles built from real BTCUSDT data.

Run: ``python bench/bench_features.py [--rows N] [--runs K]``.

The candles: the 143,900 real BTCUSDT perpetual 5m candles (shared data folder, see
``conftest.shared_data_dir``) are tiled end to end until N rows.  Open times continue
(copy k is shifted by k * 143,900 * 5 min), and each copy's prices are multiplied by one
factor chosen so that its first open equals the previous copy's last close: the price path
stays continuous (no jump at the seams; returns, ranges and volumes are the real ones).

Figures printed (K rounds, default 7; in each round every measurement below runs once, in turn,
so a drift of the machine touches them all alike; each figure is the median of its K):
* the whole feature set (``compute_features``, DataFrame out; and the bare float32 block),
  and rows per second: the headline, a fresh result per call as a user gets it; with the
  engine's default threads (two for a million rows when TA-Lib's C library is usable, see
  ``xylen.features.talib_c``) and its CPU time, then on one thread;
* for reference only, the float32 block written into one caller-provided block reused
  across calls (``feature_block(..., out=block)``): no fresh 168 MB allocation per call;
* the TA-Lib floor: the very same TA-Lib calls the engine makes, through TA-Lib's binding on
  one thread, on the same arrays (HTF calls on pre-resampled 15m/1h arrays, resampling not
  counted).  "core" = the indicators themselves (RSI, EMA, MACD, BBANDS, ATR, OBV,
  LINEARREG_SLOPE, ADX, PLUS_DI, MINUS_DI and the HTF RSI/EMA/ATR); "all" adds the TA-Lib
  rolling helpers the engine also calls (SUM x3, SMA, STDDEV);
* the newest row via ``latest_row_array`` at the default history, median of 200 calls;
* with ``--breakdown``: the time of each part of the engine inside one-thread whole-set
  calls (fresh block each call, median of K), beside the TA-Lib calls that part makes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import talib

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from xylen.data.importers import read_freqtrade_feather  # noqa: E402
from xylen.features import (  # noqa: E402
    DEFAULT_HISTORY,
    FEATURE_NAMES,
    FEATURE_VERSION,
    compute_features,
    feature_block,
    latest_row_array,
    resample_arrays,
    talib_c,
)
from xylen.features import compute as engine  # noqa: E402
from xylen.features import spec as S  # noqa: E402
from xylen.paths import SHARED_BTC_5M, shared_data_dir  # noqa: E402

BASE_MS = 300_000
Arrays = dict[str, npt.NDArray[Any]]


def build_candles(rows: int) -> Arrays:
    """Tile the real BTC 5m candles to ``rows`` rows with continuing times and prices."""
    path = shared_data_dir() / SHARED_BTC_5M
    df = read_freqtrade_feather(path)
    n = len(df)
    ot0 = df["open_time"].to_numpy(np.int64)
    prices = {k: df[k].to_numpy(np.float64) for k in ("open", "high", "low", "close")}
    reps = -(-rows // n)
    scale = np.empty(reps)
    scale[0] = 1.0
    step = prices["close"][-1] / prices["open"][0]
    for rep in range(1, reps):
        scale[rep] = scale[rep - 1] * step
    factor = np.repeat(scale, n)[:rows]
    out: Arrays = {
        "open_time": (
            np.arange(reps, dtype=np.int64).repeat(n)[:rows] * n * BASE_MS + np.tile(ot0, reps)[:rows]
        )
    }
    for k, x in prices.items():
        out[k] = np.tile(x, reps)[:rows] * factor
    out["volume"] = np.tile(df["volume"].to_numpy(np.float64), reps)[:rows]
    return out


def median_time(fn: Callable[[], object], runs: int, clock: Callable[[], float] = time.perf_counter) -> float:
    times = []
    for _ in range(runs):
        t = clock()
        fn()
        times.append(clock() - t)
    return statistics.median(times)


def interleaved(
    fns: list[Callable[[], object]], runs: int, clocks: dict[int, Callable[[], float]] | None = None
) -> list[float]:
    """Median time of each of ``fns``, measured in ``runs`` rounds that call each once in turn.

    Interleaving keeps slow drifts of the machine (other load, memory fragmentation making the
    fresh block's page faults dearer) from landing on one figure and not on the one it is
    compared with.  ``clocks`` gives another clock (CPU time) for some positions.
    """
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for i, fn in enumerate(fns):
            clock = (clocks or {}).get(i, time.perf_counter)
            t = clock()
            fn()
            times[i].append(clock() - t)
    return [statistics.median(x) for x in times]


def talib_floor(a: Arrays, htf: dict[str, Arrays]) -> tuple[Callable[[], None], Callable[[], None]]:
    """Callables running the engine's TA-Lib calls: (core indicators, all TA-Lib calls)."""
    h, lo, c, v = a["high"], a["low"], a["close"], a["volume"]

    def core() -> None:
        for p in S.RSI_PERIODS:
            talib.RSI(c, p)
        for p in S.EMA_PERIODS:
            talib.EMA(c, p)
        talib.MACD(c, S.MACD_FAST, S.MACD_SLOW, S.MACD_SIGNAL)
        talib.BBANDS(c, S.BB_PERIOD, S.BB_NBDEV, S.BB_NBDEV, talib.MA_Type.SMA)  # type: ignore[attr-defined]
        talib.ATR(h, lo, c, S.ATR_PERIOD)
        talib.LINEARREG_SLOPE(talib.OBV(c, v), S.OBV_SLOPE_PERIOD)
        talib.ADX(h, lo, c, S.ADX_PERIOD)
        talib.PLUS_DI(h, lo, c, S.ADX_PERIOD)
        talib.MINUS_DI(h, lo, c, S.ADX_PERIOD)
        for x in htf.values():
            talib.RSI(x["close"], S.HTF_RSI_PERIOD)
            talib.EMA(x["close"], S.HTF_EMA_PERIOD)
            talib.ATR(x["high"], x["low"], x["close"], S.HTF_ATR_PERIOD)

    r2 = np.diff(np.log(c)) ** 2

    def everything() -> None:
        core()
        talib.SUM(v, S.OBV_FLOW_PERIOD)
        talib.SUM(v, S.VOLUME_MOM_PERIOD)
        talib.SMA(v, S.VOLUME_Z_PERIOD)
        talib.STDDEV(v, S.VOLUME_Z_PERIOD, 1.0)
        talib.SUM(r2, S.REALISED_VOL_PERIOD)

    return core, everything


_KERNEL_PARTS = (
    "talib_direct",
    "ema_dists",
    "macd",
    "bbands",
    "atr",
    "obv",
    "candle_shape",
    "returns",
    "volume",
)


def part_talib_calls(a: Arrays, htf: dict[str, Arrays]) -> dict[str, Callable[[], object]]:
    """The TA-Lib calls each engine part makes (the engine's own, not the floor's list)."""
    h, lo, c, v = a["high"], a["low"], a["close"], a["volume"]
    obv = talib.OBV(c, v)
    r2 = np.diff(np.log(c)) ** 2
    p = S.ADX_PERIOD
    return {
        "talib_direct": lambda: (
            [talib.RSI(c, k) for k in S.RSI_PERIODS],
            talib.ADX(h, lo, c, p),
            talib.PLUS_DI(h, lo, c, p),
            talib.MINUS_DI(h, lo, c, p),
        ),
        "ema_dists": lambda: [talib.EMA(c, k) for k in S.EMA_PERIODS],
        "macd": lambda: talib.MACD(c, S.MACD_FAST, S.MACD_SLOW, S.MACD_SIGNAL),
        "bbands": lambda: talib.BBANDS(c, S.BB_PERIOD, S.BB_NBDEV, S.BB_NBDEV, talib.MA_Type.SMA),  # type: ignore[attr-defined]
        "atr": lambda: talib.ATR(h, lo, c, S.ATR_PERIOD),
        "obv": lambda: (
            talib.OBV(c, v),
            talib.SUM(v, S.OBV_FLOW_PERIOD),
            talib.LINEARREG_SLOPE(obv, S.OBV_SLOPE_PERIOD),
        ),
        "returns": lambda: talib.SUM(r2, S.REALISED_VOL_PERIOD),
        "volume": lambda: (
            talib.SUM(v, S.VOLUME_MOM_PERIOD),
            talib.SMA(v, S.VOLUME_Z_PERIOD),
            talib.STDDEV(v, S.VOLUME_Z_PERIOD, 1.0),
        ),
        "htf_block": lambda: [
            (
                talib.RSI(x["close"], S.HTF_RSI_PERIOD),
                talib.EMA(x["close"], S.HTF_EMA_PERIOD),
                talib.ATR(x["high"], x["low"], x["close"], S.HTF_ATR_PERIOD),
            )
            for x in htf.values()
        ],
    }


def breakdown(a: Arrays, htf: dict[str, Arrays], runs: int) -> None:
    """Time each engine part inside ``feature_block`` calls (wrapped in place, then restored)."""
    spent: dict[str, list[float]] = {}

    def timed(label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent.setdefault(label, []).append(time.perf_counter() - t)

        return call

    owners: list[tuple[object, str]] = [(engine._Kernel, name) for name in _KERNEL_PARTS]
    owners += [(engine, "time_features"), (engine, "htf_block")]
    saved = [(owner, name, getattr(owner, name)) for owner, name in owners]
    try:
        for owner, name, fn in saved:
            setattr(owner, name, timed(name, fn))
        totals = []
        for _ in range(runs):
            t = time.perf_counter()
            feature_block(a, threads=1)
            totals.append(time.perf_counter() - t)
    finally:
        for owner, name, fn in saved:
            setattr(owner, name, fn)
    talib_parts = part_talib_calls(a, htf)
    print(f"breakdown of the float32 block on one thread (median of {runs}; fresh block each call):")
    print(f"  {'part':14s} {'engine':>8s} {'its TA-Lib':>10s} {'rest':>8s}")
    parts = 0.0
    for name in (*_KERNEL_PARTS, "time_features", "htf_block"):
        t_part = statistics.median(spent[name])
        parts += t_part
        t_ta = median_time(talib_parts[name], runs) if name in talib_parts else 0.0
        print(f"  {name:14s} {t_part * 1e3:8.1f} {t_ta * 1e3:10.1f} {(t_part - t_ta) * 1e3:8.1f}")
    rest = statistics.median(totals) - parts
    print(f"  {'other':14s} {rest * 1e3:8.1f} {'':10s} {rest * 1e3:8.1f}  (checks, allocation)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7, help="rounds of the interleaved measurements")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--breakdown", action="store_true", help="time each part of the engine")
    args = parser.parse_args()

    a = build_candles(args.rows)
    htf: dict[str, Arrays] = {}
    for tf, ms in (("15m", 900_000), ("1h", 3_600_000)):
        _, agg = resample_arrays(a["open_time"], {k: a[k] for k in ("high", "low", "close")}, BASE_MS, ms)
        htf[tf] = agg
    core, everything = talib_floor(a, htf)
    compute_features(a)  # warm caches / imports

    reused = feature_block(a)
    t_frame, t_block, cpu_block, t_one, t_reused, t_core, t_all = interleaved(
        [
            lambda: compute_features(a),
            lambda: feature_block(a),
            lambda: feature_block(a),
            lambda: feature_block(a, threads=1),
            lambda: feature_block(a, out=reused),
            core,
            everything,
        ],
        args.runs,
        clocks={2: time.process_time},
    )
    tail = {k: x[-DEFAULT_HISTORY:] for k, x in a.items()}
    latest_row_array(tail)
    t_row = median_time(lambda: latest_row_array(tail), args.calls)

    threads = engine.default_threads(args.rows)
    print(f"feature version {FEATURE_VERSION}: {len(FEATURE_NAMES)} features, {args.rows:,} 5m rows")
    print(
        f"engine threads: {threads} (TA-Lib without the GIL: {'yes' if talib_c.library() else 'no'}, "
        f"{talib_c.usable_cores()} usable cores); the floor is TA-Lib's binding on one thread"
    )
    print(
        f"whole set, DataFrame out (median of {args.runs}): {t_frame * 1e3:8.1f} ms"
        f"  ({args.rows / t_frame:,.0f} rows/s)"
    )
    print(
        f"whole set, float32 block   (median of {args.runs}): {t_block * 1e3:8.1f} ms"
        f"  ({args.rows / t_block:,.0f} rows/s); CPU time {cpu_block * 1e3:.1f} ms"
    )
    print(
        f"whole set, float32 block on one thread:        {t_one * 1e3:8.1f} ms"
        f"  ({args.rows / t_one:,.0f} rows/s)"
    )
    print(
        f"  (reference) block into a reused out= block:  {t_reused * 1e3:8.1f} ms"
        f"  ({args.rows / t_reused:,.0f} rows/s)"
    )
    print(f"TA-Lib floor, core indicators:            {t_core * 1e3:8.1f} ms")
    print(f"TA-Lib floor, all TA-Lib calls made:      {t_all * 1e3:8.1f} ms")
    print(f"ratio whole set / floor(all):  DataFrame {t_frame / t_all:.2f}x, block {t_block / t_all:.2f}x")
    print(f"  (reference) ratio reused out= block / floor(all): {t_reused / t_all:.2f}x")
    print(
        f"ratio on one thread / floor(all): {t_one / t_all:.2f}x; "
        f"CPU time of the whole set / floor(all): {cpu_block / t_all:.2f}x"
    )
    print(f"ratio whole set / floor(core): DataFrame {t_frame / t_core:.2f}x, block {t_block / t_core:.2f}x")
    print(f"newest row, history {DEFAULT_HISTORY} (median of {args.calls}): {t_row * 1e3:.3f} ms")
    if args.breakdown:
        breakdown(a, htf, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
