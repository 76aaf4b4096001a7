"""Tests of the paper exchange core, on real Binance candles from the shared data folder
(:func:`xylen.paths.shared_data_dir`).

Helpers shared by the test modules: cached real candle windows and service construction.
"""

from __future__ import annotations

from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd

from paper_exchange.feed import ReplayFeed
from paper_exchange.service import PaperExchangeService, ServiceConfig
from xylen.data.importers import read_freqtrade_feather
from xylen.paths import shared_data_dir

DATA = shared_data_dir() / "freqtrade_binance_futures"
DAY = 86_400_000
T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
T2023 = 1_672_531_200_000  # 2023-01-01 00:00 UTC
KEY = "test-key"


@cache
def _full(name: str) -> pd.DataFrame:
    return read_freqtrade_feather(DATA / name)


def candles(symbol: str = "BTCUSDT", start: int = T0, days: float = 3) -> pd.DataFrame:
    """Real 5m candles of ``symbol`` from ``start`` for ``days``."""
    base = symbol[:-4]
    frame = _full(f"{base}_USDT_USDT-5m-futures.feather")
    mask = (frame["open_time"] >= start) & (frame["open_time"] < start + int(days * DAY))
    return frame[mask].reset_index(drop=True)


def funding(symbol: str = "BTCUSDT") -> pd.DataFrame:
    return _full(f"{symbol[:-4]}_USDT_USDT-8h-funding_rate.feather")


def make_feed(symbols: tuple[str, ...] = ("BTCUSDT",), start: int = T0, days: float = 3) -> ReplayFeed:
    return ReplayFeed(
        {s: candles(s, start, days) for s in symbols},
        "5m",
        {s: funding(s) for s in symbols},
    )


def make_service(
    tmp_path: Path,
    symbols: tuple[str, ...] = ("BTCUSDT",),
    start: int = T0,
    days: float = 3,
    clock_at: int | None = None,
    **config: Any,
) -> PaperExchangeService:
    """A stepped service over real candles, its clock at ``clock_at`` (default: start + 1 day)."""
    feed = make_feed(symbols, start, days)
    cfg = ServiceConfig(
        db_path=tmp_path / "exchange.db",
        symbols=symbols,
        start_ms=clock_at if clock_at is not None else start + DAY,
        **config,
    )
    return PaperExchangeService(cfg, feed=feed)


def dec(value: str | float) -> Decimal:
    return Decimal(str(value))
