"""Replay of stored candles behind a replay clock: the paper exchange's only market data.

Path rule
    Inside a candle of duration ``T`` the price moves linearly through four points:
    ``open -> low -> high -> close`` when ``close >= open``, else ``open -> high -> low -> close``.
    Each leg lasts a third of the candle (``T // 3`` ms; the last leg takes the remainder),
    and carries a third of the candle's volume.  Between two candles the price jumps from
    the previous close to the next open at the next candle's open time.  Before a symbol's
    first candle there is no price; after its last one the price stays at the last close.

Mark price
    The same path.  There is no separate mark-price series at 5m (the freqtrade mark files
    are 8h), so the perpetual premium is ignored: mark = index = last price, rounded to the
    tick by the engine.

No look-ahead
    Everything here takes the replay time ``now`` and never reads a candle opening after it.
    The candle containing ``now`` is shown partially: its open, the high/low of the path so
    far, close = the current path price, volume (and quote volume) pro-rated by the elapsed
    fraction of the candle.  Coarser klines (15m, 1h, ...) are aggregated from the base
    candles, so a coarse candle is partial too while the clock is inside it.

Funding rates
    From freqtrade ``*-8h-funding_rate.feather`` files (rate in ``open``); their times carry a
    few ms of jitter and are rounded to the 8h boundary.  A settlement without a known rate
    uses ``default_funding_rate`` (0.0001).

Estimates where the data has none: a missing quote volume is ``volume x (o+h+l+c)/4``, a
missing trade count is 0 and taker-buy volumes are reported as 0.

The clock (:class:`ReplayClock`) is either stepped by a caller (``step_to``) or runs at
``speed`` x wall time from a start replay time; the wall-time function is injectable.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from paper_exchange.engine.errors import MSG_INVALID_INTERVAL, ApiError
from paper_exchange.engine.models import FUNDING_INTERVAL_MS
from xylen.data import CandleStore, interval_ms
from xylen.data.importers import read_freqtrade_feather

logger = logging.getLogger(__name__)

DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS
_WEEK_OFFSET_MS = 4 * DAY_MS  # 1970-01-05 was the first Monday: weekly klines open on Mondays
DEFAULT_FUNDING_RATE = Decimal("0.0001")
KLINE_INTERVALS = ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w")


@dataclass(frozen=True)
class Leg:
    """One linear piece of a symbol's path: from ``(t0, p0)`` to ``(t1, p1)`` with ``volume``."""

    t0: int
    t1: int
    p0: float
    p1: float
    volume: float

    def price_at(self, ts: int) -> float:
        if self.t1 == self.t0:
            return self.p1
        return self.p0 + (self.p1 - self.p0) * (ts - self.t0) / (self.t1 - self.t0)


class _Series:
    """The candles of one symbol as numpy arrays."""

    def __init__(self, frame: pd.DataFrame, step_ms: int) -> None:
        self.open_time: npt.NDArray[np.int64] = frame["open_time"].to_numpy(dtype="int64")
        self.open = frame["open"].to_numpy(dtype="float64")
        self.high = frame["high"].to_numpy(dtype="float64")
        self.low = frame["low"].to_numpy(dtype="float64")
        self.close = frame["close"].to_numpy(dtype="float64")
        self.volume = frame["volume"].to_numpy(dtype="float64")
        typical = (self.open + self.high + self.low + self.close) / 4.0
        if "quote_volume" in frame.columns:
            qv = frame["quote_volume"].to_numpy(dtype="float64")
            self.quote_volume = np.where(np.isnan(qv), self.volume * typical, qv)
        else:
            self.quote_volume = self.volume * typical
        if "trades" in frame.columns:
            self.trades = np.nan_to_num(frame["trades"].to_numpy(dtype="float64"))
        else:
            self.trades = np.zeros(len(self.open))
        if len(self.open_time) and np.any(self.open_time % step_ms):
            raise ValueError("candle open times are not aligned to the interval")
        if len(self.open_time) > 1 and np.any(np.diff(self.open_time) <= 0):
            raise ValueError("candle open times are not strictly increasing")
        self.step = step_ms
        # without gaps, a candle's index is arithmetic on its open time (the matching engine asks
        # several times per candle and per order, and a scalar search costs microseconds)
        n = len(self.open_time)
        self._first = int(self.open_time[0]) if n else 0
        self._last = n - 1
        self._gapless = n > 0 and int(self.open_time[-1]) - self._first == (n - 1) * step_ms
        self._points: tuple[int, tuple[tuple[int, int, int, int], tuple[float, float, float, float]]] | None
        self._points = None

    def __len__(self) -> int:
        return len(self.open_time)

    def index(self, ts: int) -> int:
        """Index of the candle containing ``ts`` (-1 before the first; may be a gap's prior candle)."""
        if self._gapless:
            if ts < self._first:
                return -1
            return min(int((ts - self._first) // self.step), self._last)
        return int(np.searchsorted(self.open_time, ts, side="right")) - 1

    def points(self, i: int) -> tuple[tuple[int, int, int, int], tuple[float, float, float, float]]:
        """The four path points of candle ``i`` (times, prices); the last candle's are kept."""
        cached = self._points
        if cached is not None and cached[0] == i:
            return cached[1]
        t0 = int(self.open_time[i])
        third = self.step // 3
        o, h, lo, c = float(self.open[i]), float(self.high[i]), float(self.low[i]), float(self.close[i])
        times = (t0, t0 + third, t0 + 2 * third, t0 + self.step)
        prices = (o, lo, h, c) if c >= o else (o, h, lo, c)
        self._points = (i, (times, prices))
        return times, prices


def _interp(times: Sequence[int], prices: Sequence[float], ts: int) -> float:
    for k in range(1, 4):
        if ts <= times[k]:
            t0, t1 = times[k - 1], times[k]
            if t1 == t0:
                return prices[k]
            return prices[k - 1] + (prices[k] - prices[k - 1]) * (ts - t0) / (t1 - t0)
    return prices[3]


class ReplayClock:
    """Replay time in ms: stepped (``speed=None``) or ``speed`` x wall time since an anchor."""

    def __init__(
        self,
        start_ms: int,
        speed: float | None = None,
        wall: Callable[[], float] = time.time,
        end_ms: int | None = None,
    ) -> None:
        if speed is not None and speed <= 0:
            raise ValueError("speed must be positive (or None for a stepped clock)")
        self.speed = speed
        self._wall = wall
        self.end_ms = end_ms
        self._anchor_ms = start_ms
        self._anchor_wall = wall()

    @property
    def stepped(self) -> bool:
        return self.speed is None

    def now_ms(self) -> int:
        """The replay time now (never beyond ``end_ms``)."""
        now = self._anchor_ms
        if self.speed is not None:
            now += int((self._wall() - self._anchor_wall) * 1000.0 * self.speed)
        if self.end_ms is not None and now > self.end_ms:
            return self.end_ms
        return now

    def step_to(self, ts_ms: int) -> None:
        """Move the replay time to ``ts_ms`` (never backwards); a running clock re-anchors there."""
        if ts_ms < self.now_ms():
            raise ValueError(f"the replay clock cannot go back ({ts_ms} < {self.now_ms()})")
        self.restore(ts_ms)

    def restore(self, ts_ms: int) -> None:
        """Re-anchor at ``ts_ms`` (used when reopening a saved exchange)."""
        self._anchor_ms = ts_ms
        self._anchor_wall = self._wall()


class ReplayFeed:
    """Candles of one base interval per symbol, revealed only up to the replay time."""

    def __init__(
        self,
        candles: Mapping[str, pd.DataFrame],
        interval: str = "5m",
        funding: Mapping[str, pd.DataFrame] | None = None,
        default_funding_rate: Decimal = DEFAULT_FUNDING_RATE,
    ) -> None:
        self.interval = interval
        self.step = interval_ms(interval)
        self._series: dict[str, _Series] = {}
        for symbol, frame in candles.items():
            series = _Series(frame, self.step)
            if len(series) == 0:
                raise ValueError(f"{symbol}: no candles")
            self._series[symbol] = series
        if not self._series:
            raise ValueError("a replay feed needs at least one symbol")
        self.default_funding_rate = default_funding_rate
        self._funding: dict[str, dict[int, Decimal]] = {}
        for symbol, frame in (funding or {}).items():
            rates: dict[int, Decimal] = {}
            times = frame["open_time"].to_numpy(dtype="int64")
            values = frame["open"].to_numpy(dtype="float64")
            for ts, rate in zip(times, values, strict=True):
                boundary = round(int(ts) / FUNDING_INTERVAL_MS) * FUNDING_INTERVAL_MS
                rates[boundary] = Decimal(repr(float(rate)))
            self._funding[symbol] = rates

    # -- construction -----------------------------------------------------------------------------
    @classmethod
    def from_store(
        cls,
        store: CandleStore,
        symbols: Sequence[str],
        interval: str = "5m",
        market: str = "um",
        funding_dir: Path | None = None,
        default_funding_rate: Decimal = DEFAULT_FUNDING_RATE,
    ) -> ReplayFeed:
        """Candles from the candle store; funding files ``<BASE>_USDT_USDT-8h-funding_rate.feather``."""
        candles = {s: store.read(market, s, interval) for s in symbols}
        return cls(candles, interval, load_funding(funding_dir, symbols), default_funding_rate)

    # -- facts --------------------------------------------------------------------------------------
    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self._series)

    def first_open(self, symbol: str | None = None) -> int:
        """Earliest open time (of ``symbol``, or of any symbol)."""
        if symbol is not None:
            return int(self._series[symbol].open_time[0])
        return min(int(s.open_time[0]) for s in self._series.values())

    def end_ms(self, symbol: str | None = None) -> int:
        """The moment the last candle closes (of ``symbol``, or the latest of all)."""
        if symbol is not None:
            return int(self._series[symbol].open_time[-1]) + self.step
        return max(int(s.open_time[-1]) + self.step for s in self._series.values())

    def reference_price(self, symbol: str) -> float:
        """A typical price of the symbol (its first close), used to derive filters."""
        return float(self._series[symbol].close[0])

    # -- the path -----------------------------------------------------------------------------------
    def price_at(self, symbol: str, ts: int) -> float | None:
        """The path price of ``symbol`` at ``ts`` (None before its first candle)."""
        series = self._series[symbol]
        i = series.index(ts)
        if i < 0:
            return None
        if ts >= int(series.open_time[i]) + self.step:
            return float(series.close[i])
        times, prices = series.points(i)
        return _interp(times, prices, ts)

    def breakpoints(self, start: int, end: int) -> list[int]:
        """Leg boundaries strictly inside ``(start, end)`` (the same grid for every symbol)."""
        third = self.step // 3
        out: list[int] = []
        base = (start // self.step) * self.step
        while base < end:
            for t in (base, base + third, base + 2 * third):
                if start < t < end:
                    out.append(t)
            base += self.step
        return out

    def leg(self, symbol: str, t0: int, t1: int) -> Leg | None:
        """The path of ``symbol`` from ``t0`` to ``t1`` (no breakpoint strictly inside)."""
        series = self._series[symbol]
        i = series.index(t0)
        if i < 0:
            return None
        start = int(series.open_time[i])
        p0 = self.price_at(symbol, t0)
        p1 = self.price_at(symbol, t1)
        if p0 is None or p1 is None:
            raise RuntimeError(f"{symbol}: no price at {t0} or {t1}")
        # after the data or in a gap: flat, no volume
        volume = 0.0 if t0 >= start + self.step else float(series.volume[i]) * (t1 - t0) / self.step
        return Leg(t0, t1, p0, p1, volume)

    def full_leg(self, symbol: str, ts: int) -> tuple[int, float]:
        """Start and volume of the whole leg (third of a candle) containing ``ts``."""
        series = self._series[symbol]
        i = series.index(ts)
        if i < 0:
            return ts, 0.0
        start = int(series.open_time[i])
        if ts >= start + self.step:
            return ts, 0.0
        third = self.step // 3
        k = min(2, (ts - start) // third)
        end = start + (k + 1) * third if k < 2 else start + self.step
        return start + k * third, float(series.volume[i]) * (end - start - k * third) / self.step

    def funding_rate(self, symbol: str, funding_time: int) -> Decimal:
        """The funding rate settled at ``funding_time`` (default when unknown)."""
        return self._funding.get(symbol, {}).get(funding_time, self.default_funding_rate)

    def last_funding_rate(self, symbol: str, now: int) -> Decimal:
        """The rate of the last settlement at or before ``now``."""
        return self.funding_rate(symbol, (now // FUNDING_INTERVAL_MS) * FUNDING_INTERVAL_MS)

    # -- klines and tickers (never after ``now``) ---------------------------------------------------
    def _visible(self, symbol: str, lo: int, hi: int, now: int) -> dict[str, npt.NDArray[np.float64]] | None:
        """Base candles with ``lo <= open_time <= min(hi, now)``; one containing ``now`` is cut there."""
        s = self._series[symbol]
        a = int(np.searchsorted(s.open_time, lo, side="left"))
        b = int(np.searchsorted(s.open_time, min(hi, now), side="right"))
        if b <= a:
            return None
        cols = {
            "open_time": s.open_time[a:b].astype("float64"),
            "open": s.open[a:b].copy(),
            "high": s.high[a:b].copy(),
            "low": s.low[a:b].copy(),
            "close": s.close[a:b].copy(),
            "volume": s.volume[a:b].copy(),
            "quote_volume": s.quote_volume[a:b].copy(),
            "trades": s.trades[a:b].copy(),
        }
        last = b - 1
        elapsed = now - int(s.open_time[last])
        if 0 <= elapsed < self.step:  # the candle containing ``now`` is still open
            times, prices = s.points(last)
            current = _interp(times, prices, now)
            seen = [p for t, p in zip(times, prices, strict=True) if t <= now] + [current]
            frac = elapsed / self.step
            cols["high"][-1] = max(seen)
            cols["low"][-1] = min(seen)
            cols["close"][-1] = current
            cols["volume"][-1] *= frac
            cols["quote_volume"][-1] *= frac
            cols["trades"][-1] = math.floor(cols["trades"][-1] * frac)
        return cols

    def _bucket(self, ts: int, size: int) -> int:
        offset = _WEEK_OFFSET_MS if size == WEEK_MS else 0
        return ((ts - offset) // size) * size + offset

    def klines(
        self,
        symbol: str,
        interval: str,
        now: int,
        start: int | None = None,
        end: int | None = None,
        limit: int = 500,
    ) -> list[tuple[int, float, float, float, float, float, int, float, int]]:
        """Rows ``(open_time, o, h, l, c, volume, close_time, quote_volume, trades)``, oldest first."""
        if interval not in KLINE_INTERVALS:
            raise ApiError(-1120, MSG_INVALID_INTERVAL)
        size = interval_ms(interval)
        if size % self.step:
            raise ApiError(-1120, MSG_INVALID_INTERVAL)
        upper = now if end is None else min(end, now)
        if start is not None and start > upper:
            return []
        last_bucket = self._bucket(upper, size)
        if start is not None:
            first_bucket = self._bucket(start, size)
            if first_bucket < start:
                first_bucket += size
            last_bucket = min(last_bucket, first_bucket + (limit - 1) * size)
        else:
            first_bucket = max(last_bucket - (limit - 1) * size, self._bucket(self.first_open(symbol), size))
        if last_bucket < first_bucket:
            return []
        cols = self._visible(symbol, first_bucket, last_bucket + size - 1, now)
        if cols is None:
            return []
        ot = cols["open_time"].astype("int64")
        buckets = ((ot - (_WEEK_OFFSET_MS if size == WEEK_MS else 0)) // size) * size + (
            _WEEK_OFFSET_MS if size == WEEK_MS else 0
        )
        starts = np.flatnonzero(np.r_[True, buckets[1:] != buckets[:-1]])
        ends = np.r_[starts[1:], len(buckets)] - 1
        rows = []
        highs = np.maximum.reduceat(cols["high"], starts)
        lows = np.minimum.reduceat(cols["low"], starts)
        vols = np.add.reduceat(cols["volume"], starts)
        qvols = np.add.reduceat(cols["quote_volume"], starts)
        trades = np.add.reduceat(cols["trades"], starts)
        for k, (i, j) in enumerate(zip(starts, ends, strict=True)):
            bucket = int(buckets[i])
            rows.append(
                (
                    bucket,
                    float(cols["open"][i]),
                    float(highs[k]),
                    float(lows[k]),
                    float(cols["close"][j]),
                    float(vols[k]),
                    bucket + size - 1,
                    float(qvols[k]),
                    int(trades[k]),
                )
            )
        return rows[-limit:] if start is None else rows[:limit]

    def ticker_24h(self, symbol: str, now: int) -> dict[str, float | int] | None:
        """Rolling 24h statistics up to ``now`` (from the candle containing ``now - 24h``)."""
        s = self._series[symbol]
        i = s.index(now - DAY_MS)
        lo = int(s.open_time[i]) if i >= 0 else int(s.open_time[0])
        cols = self._visible(symbol, lo, now, now)
        if cols is None:
            return None
        last = self.price_at(symbol, now)
        if last is None:
            raise RuntimeError(f"{symbol}: no price at {now}")
        return {
            "open": float(cols["open"][0]),
            "high": float(cols["high"].max()),
            "low": float(cols["low"].min()),
            "last": last,
            "volume": float(cols["volume"].sum()),
            "quote_volume": float(cols["quote_volume"].sum()),
            "count": int(cols["trades"].sum()),
            "open_time": int(cols["open_time"][0]),
            "close_time": now,
        }


def load_funding(funding_dir: Path | None, symbols: Sequence[str]) -> dict[str, pd.DataFrame]:
    """Funding-rate frames (``open_time``, ``open`` = rate) for the symbols that have a file."""
    found: dict[str, pd.DataFrame] = {}
    if funding_dir is None or not funding_dir.is_dir():
        return found
    for symbol in symbols:
        if not symbol.endswith("USDT"):
            continue
        path = funding_dir / f"{symbol[:-4]}_USDT_USDT-8h-funding_rate.feather"
        if path.is_file():
            found[symbol] = read_freqtrade_feather(path)
            logger.info("funding rates for %s from %s (%d settlements)", symbol, path, len(found[symbol]))
    return found
