"""The market snapshot of one heartbeat, per symbol: closed candles, mark/last price, funding, features.

:class:`MarketData` keeps, per symbol, a :class:`CandleTail` of the last ``market.history_candles``
CLOSED base-interval candles from ``GET /fapi/v1/klines``.  The first snapshot pages the history
forward (1,500 candles a request, Binance's maximum); every later one asks only for the candles
after the newest one held (``startTime``) and appends the closed ones, so a beat costs one small
klines request.  A candle is closed when its close time is before the exchange's time of the same
beat (``premiumIndex.time``; Binance also returns the candle still open, which is dropped here).

The features of the newest closed candle come from :func:`xylen.features.latest_row` over the tail
(~1 ms for 4,000 candles); non-finite values (warm-up) are left out, as the wire contract refuses
them.  The three requests of a snapshot (klines, ``premiumIndex``, ``ticker/price``) go out in
parallel; each has the transport's timeout (``exchange.request_timeout_seconds``).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt

from coordinator.exchange.client import BinanceFuturesClient
from coordinator.exchange.constants import Endpoint
from xylen.contract import Candle
from xylen.data.schema import interval_ms
from xylen.features import FEATURE_VERSION, latest_row

logger = logging.getLogger(__name__)

MAX_KLINES = 1500  # Binance's maximum ``limit`` for /fapi/v1/klines
PREMIUM_INDEX = Endpoint("GET", "/fapi/v1/premiumIndex", 1, 10)
TICKER_PRICE = Endpoint("GET", "/fapi/v1/ticker/price", 1, 2)
_COLUMNS = ("open", "high", "low", "close", "volume")


def klines_endpoint(limit: int) -> Endpoint:
    """``GET /fapi/v1/klines`` weighing what ``limit`` costs (<100: 1, <500: 2, <=1000: 5, else 10)."""
    weight = 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10
    return Endpoint("GET", "/fapi/v1/klines", weight)


class CandleTail:
    """The newest ``capacity`` closed candles of one symbol as numpy arrays (oldest first)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.open_time: npt.NDArray[np.int64] = np.empty(0, dtype=np.int64)
        self.columns: dict[str, npt.NDArray[np.float64]] = {c: np.empty(0) for c in _COLUMNS}

    def __len__(self) -> int:
        return len(self.open_time)

    @property
    def last_open_ms(self) -> int | None:
        return int(self.open_time[-1]) if len(self.open_time) else None

    def append(self, rows: Sequence[Sequence[Any]]) -> int:
        """Append kline rows newer than the newest held (older ones are ignored); returns how many."""
        last = self.last_open_ms
        fresh = [r for r in rows if last is None or int(r[0]) > last]
        if not fresh:
            return 0
        times = np.fromiter((int(r[0]) for r in fresh), dtype=np.int64, count=len(fresh))
        values = np.array([[float(r[i]) for i in range(1, 6)] for r in fresh], dtype=np.float64)
        keep = self.capacity
        self.open_time = np.concatenate((self.open_time, times))[-keep:]
        for i, name in enumerate(_COLUMNS):
            self.columns[name] = np.concatenate((self.columns[name], values[:, i]))[-keep:]
        return len(fresh)

    def arrays(self) -> dict[str, npt.NDArray[Any]]:
        """The candle arrays as :func:`xylen.features.latest_row` takes them."""
        return {"open_time": self.open_time, **self.columns}

    def wire(self, n: int) -> list[Candle]:
        """The newest ``n`` candles as wire arrays ``[open_time, o, h, l, c, v]``."""
        cols = [self.columns[c][-n:].tolist() for c in _COLUMNS]
        times = self.open_time[-n:].tolist()
        return [(t, o, h, lo, c, v) for t, o, h, lo, c, v in zip(times, *cols, strict=True)]


@dataclass(frozen=True, slots=True)
class MarketSnapshot:
    """What one beat knows of one symbol.

    ``taken_ms`` is the coordinator clock's time when the snapshot was taken, ``server_ms`` the
    exchange's; ``close_time_ms`` the close time of the newest closed candle (the decision time).
    """

    symbol: str
    interval: str
    taken_ms: int
    server_ms: int
    open_time_ms: int
    close_time_ms: int
    close: float
    mark_price: Decimal
    last_price: Decimal
    funding_rate: float
    next_funding_ms: int | None
    features: dict[str, float]
    candles: list[Candle] = field(repr=False)
    candle_count: int
    new_candles: int
    feature_version: str = FEATURE_VERSION

    @property
    def atr(self) -> float | None:
        """ATR(14) in price units: the scale-free feature ``atr_14_rel`` times the close."""
        value = self.features.get("atr_14_rel")
        return value * self.close if value is not None and value > 0 else None


class MarketData:
    """Incremental snapshots of ``symbols`` from the exchange's REST API (module docstring)."""

    def __init__(
        self,
        client: BinanceFuturesClient,
        symbols: Sequence[str],
        interval: str,
        history: int,
        *,
        request_candles: int = 100,
    ) -> None:
        self.client = client
        self.symbols = list(symbols)
        self.interval = interval
        self.step_ms = interval_ms(interval)
        self.history = history
        self.request_candles = request_candles
        self.tails = {s: CandleTail(history) for s in self.symbols}

    async def _klines(self, symbol: str, start_ms: int, limit: int) -> list[list[Any]]:
        params = {
            "symbol": symbol,
            "interval": self.interval,
            "startTime": str(start_ms),
            "limit": str(limit),
        }
        rows: list[list[Any]] = await self.client.raw_request(klines_endpoint(limit), params)
        return rows

    async def _update_tail(self, symbol: str, server_ms: int) -> int:
        """Fetch the closed candles after the newest held (the whole history the first time)."""
        tail = self.tails[symbol]
        current_open = (server_ms // self.step_ms) * self.step_ms  # the candle still open
        last = tail.last_open_ms
        start = current_open - self.history * self.step_ms if last is None else last + self.step_ms
        added = 0
        while start < current_open:
            wanted = (current_open - start) // self.step_ms
            limit = int(min(MAX_KLINES, max(wanted + 1, 2)))
            rows = await self._klines(symbol, start, limit)
            closed = [r for r in rows if int(r[6]) < server_ms]
            added += tail.append(closed)
            if len(rows) < limit or not closed:
                break
            start = int(closed[-1][0]) + self.step_ms
        return added

    async def _premium_and_ticker(self, symbol: str) -> tuple[dict[str, Any], dict[str, Any]]:
        premium, ticker = await asyncio.gather(
            self.client.raw_request(PREMIUM_INDEX, {"symbol": symbol}),
            self.client.raw_request(TICKER_PRICE, {"symbol": symbol}),
        )
        return premium, ticker

    async def snapshot(self, symbol: str, taken_ms: int) -> MarketSnapshot:
        """The snapshot of ``symbol`` now (``taken_ms``: the coordinator clock's reading)."""
        tail = self.tails[symbol]
        if len(tail) == 0:
            premium, ticker = await self._premium_and_ticker(symbol)
            new = await self._update_tail(symbol, int(premium["time"]))
        else:
            (premium, ticker), new = await self._incremental(symbol)
        if len(tail) == 0:
            raise RuntimeError(f"{symbol}: the exchange returned no closed {self.interval} candles")
        row = latest_row(tail.arrays(), self.interval, history=self.history)
        open_ms = int(row.pop("open_time"))
        features = {k: v for k, v in row.items() if math.isfinite(v)}
        next_funding = premium.get("nextFundingTime")
        return MarketSnapshot(
            symbol=symbol,
            interval=self.interval,
            taken_ms=taken_ms,
            server_ms=int(premium["time"]),
            open_time_ms=open_ms,
            close_time_ms=open_ms + self.step_ms - 1,
            close=float(tail.columns["close"][-1]),
            mark_price=Decimal(str(premium["markPrice"])),
            last_price=Decimal(str(ticker["price"])),
            funding_rate=float(premium.get("lastFundingRate") or 0.0),
            next_funding_ms=int(next_funding) if next_funding else None,
            features=features,
            candles=tail.wire(self.request_candles),
            candle_count=len(tail),
            new_candles=new,
        )

    async def _incremental(self, symbol: str) -> tuple[tuple[dict[str, Any], dict[str, Any]], int]:
        """premiumIndex, ticker and the new klines at once; klines filtered by premiumIndex's time."""
        tail = self.tails[symbol]
        last = tail.last_open_ms
        if last is None:
            raise RuntimeError(f"{symbol}: no candle to extend from")
        start = last + self.step_ms
        prices_task = asyncio.ensure_future(self._premium_and_ticker(symbol))
        try:
            rows = await self._klines(symbol, start, 10)
        except BaseException:
            prices_task.cancel()
            await asyncio.gather(prices_task, return_exceptions=True)
            raise
        premium, ticker = await prices_task
        server_ms = int(premium["time"])
        closed = [r for r in rows if int(r[6]) < server_ms]
        added = tail.append(closed)
        if len(rows) == 10 and closed:  # more than a few candles behind (a pause): page the rest
            added += await self._update_tail(symbol, server_ms)
        return (premium, ticker), added

    async def snapshot_all(self, taken_ms: int) -> dict[str, MarketSnapshot]:
        """Every symbol's snapshot, fetched in parallel."""
        snaps = await asyncio.gather(*(self.snapshot(s, taken_ms) for s in self.symbols))
        return {s.symbol: s for s in snaps}
