"""The backtest's market data: candles, their features and the funding rates, from one source.

Candles come from a candle store folder (``--data DIR``, laid out as ``<home>/candles``), a single
candle file (a freqtrade feather or JSON file, or a binance.vision kline CSV or zip:
:func:`read_candle_file`; refused when its candles are not the interval apart, or when its name is
binance.vision's or freqtrade's form for another symbol), or by default the shipped BTCUSDT/ETHUSDT
5m files of the shared data folder. Funding rates come from the freqtrade
``*-8h-funding_rate.feather`` files next to the candles (the same files the paper exchange reads,
:func:`paper_exchange.feed.load_funding`); a symbol without one pays the venue's default rate.

Features are the one feature engine's (:func:`xylen.features.compute_features`) over the whole
loaded history at once.  Every indicator is causal (a row uses only its own candle and older ones),
so the row of candle ``t`` equals what :func:`xylen.features.latest_row` gives the live coordinator
at ``t`` to float32 rounding; the look-ahead test checks the decisions this yields.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from paper_exchange.feed import load_funding
from xylen.data import CandleStore
from xylen.data.importers import read_freqtrade_feather, read_freqtrade_json
from xylen.data.parse import read_kline_file
from xylen.data.quality import format_ms
from xylen.data.schema import infer_interval, interval_ms
from xylen.errors import UsageError
from xylen.features import compute_features
from xylen.paths import shared_data_dir

FUNDING_FOLDER = "freqtrade_binance_futures"


def shipped_candle_file(symbol: str, interval: str = "5m") -> Path:
    """The shared data's freqtrade candle file of ``symbol`` (e.g. BTCUSDT -> BTC_USDT_USDT-5m-futures)."""
    return shared_data_dir() / FUNDING_FOLDER / f"{symbol[:-4]}_USDT_USDT-{interval}-futures.feather"


def load_candles(
    symbol: str, interval: str = "5m", data: Path | None = None
) -> tuple[pd.DataFrame, Path | None]:
    """``(candles, funding_dir)``: the candles of ``symbol`` (oldest first, ``open_time`` ms) and the
    folder holding its funding file, if any (module docstring)."""
    if data is None:
        path = shipped_candle_file(symbol, interval)
        if not path.is_file():
            raise UsageError(f"no shipped {interval} candles for {symbol} ({path.name}); give --data DIR")
        return _clean(read_freqtrade_feather(path)), path.parent
    if data.is_file():
        named = symbol_in_file_name(data.name)
        if named is not None and named != symbol:
            raise UsageError(f"--data {data}: its name says {named} candles, the run is {symbol} (--symbol)")
        frame = _clean(read_candle_file(data))
        if len(frame) >= 2:
            found = infer_interval(frame["open_time"].to_numpy(np.int64))
            if interval_ms(found) != interval_ms(interval):
                raise UsageError(f"--data {data}: its candles are {found} apart, not {interval} (--interval)")
        return frame, data.parent
    store_root = data / "candles" if (data / "candles").is_dir() else data
    frame = CandleStore(store_root).read("um", symbol, interval)
    if frame is None or len(frame) == 0:
        raise UsageError(f"--data {data}: no um {symbol} {interval} candles there")
    funding = data / "funding" if (data / "funding").is_dir() else data
    return _clean(frame), funding


_BINANCE_NAME = re.compile(r"^([A-Z0-9]+)-\d+[smhdw]-")  # BTCUSDT-5m-2024-03.csv
_FREQTRADE_NAME = re.compile(r"^([A-Z0-9]+)_([A-Z0-9]+)_[A-Z0-9]+-\d+[smhdw]-")  # BTC_USDT_USDT-5m-futures


def symbol_in_file_name(name: str) -> str | None:
    """The symbol a binance.vision or freqtrade candle file's name gives (``BTCUSDT-5m-2024-03.csv``,
    ``BTC_USDT_USDT-5m-futures.feather``: BTCUSDT), or None for a name of another form."""
    match = _BINANCE_NAME.match(name)
    if match is not None:
        return match.group(1)
    match = _FREQTRADE_NAME.match(name)
    if match is not None:
        return match.group(1) + match.group(2)
    return None


def read_candle_file(path: Path) -> pd.DataFrame:
    """One candle file: a freqtrade ``.feather`` or ``.json``, or a binance.vision kline ``.csv`` or
    ``.zip`` (the formats ``xylen data import`` reads)."""
    suffix = path.suffix.lower()
    if suffix == ".feather":
        return read_freqtrade_feather(path)
    if suffix == ".json":
        return read_freqtrade_json(path)
    if suffix in (".csv", ".zip"):
        return read_kline_file(path)
    raise UsageError(f"--data {path}: unsupported candle file (expected .feather, .json, .csv or .zip)")


def _clean(frame: pd.DataFrame) -> pd.DataFrame:
    cols = ["open_time", "open", "high", "low", "close", "volume"]
    out = frame[cols].copy()
    out["open_time"] = out["open_time"].astype("int64")
    for c in cols[1:]:
        out[c] = out[c].astype("float64")
    return out.sort_values("open_time").drop_duplicates("open_time").reset_index(drop=True)


def load_funding_frame(funding_dir: Path | None, symbol: str) -> pd.DataFrame | None:
    """The funding rates of ``symbol`` as the paper exchange reads them, or None."""
    return load_funding(funding_dir, [symbol]).get(symbol)


@dataclass
class MarketHistory:
    """One symbol's candles and features; ``first``..``stop`` (exclusive) are the span's rows."""

    symbol: str
    interval: str
    candles: pd.DataFrame
    features: pd.DataFrame
    first: int
    stop: int
    funding: pd.DataFrame | None

    @cached_property
    def step_ms(self) -> int:
        return interval_ms(self.interval)

    @cached_property
    def open_time(self) -> npt.NDArray[np.int64]:
        """The candles' open times (read once: the engine asks for them on every candle)."""
        return self.candles["open_time"].to_numpy(np.int64)

    def span(self) -> pd.DataFrame:
        """The span's candles."""
        return self.candles.iloc[self.first : self.stop].reset_index(drop=True)


def market_history(
    symbol: str,
    start_ms: int,
    end_ms: int,
    *,
    interval: str = "5m",
    data: Path | None = None,
    warmup_candles: int = 1000,
) -> MarketHistory:
    """The candles from ``warmup_candles`` before ``start_ms`` to ``end_ms`` (exclusive), with features."""
    candles, funding_dir = load_candles(symbol, interval, data)
    return history_of(
        candles,
        symbol,
        start_ms,
        end_ms,
        interval=interval,
        warmup_candles=warmup_candles,
        funding=load_funding_frame(funding_dir, symbol),
    )


def span_cut_note(history: MarketHistory, start_ms: int, end_ms: int) -> str | None:
    """A note when the data covers less of ``start_ms``..``end_ms`` than asked (a candle or more
    missing at either end: the span runs on what there is), else None."""
    first = int(history.open_time[history.first])
    end = int(history.open_time[history.stop - 1]) + history.step_ms
    if first - start_ms < history.step_ms and end_ms - end < history.step_ms:
        return None
    return (
        f"note: of the span asked ({format_ms(start_ms)} to {format_ms(end_ms)} UTC) the {history.symbol}"
        f" {history.interval} data covers only {format_ms(first)} to {format_ms(end)}; the run covers that"
    )


def history_of(
    candles: pd.DataFrame,
    symbol: str,
    start_ms: int,
    end_ms: int,
    *,
    interval: str = "5m",
    warmup_candles: int = 1000,
    funding: pd.DataFrame | None = None,
) -> MarketHistory:
    """:func:`market_history` over candles already loaded."""
    ot = candles["open_time"].to_numpy(np.int64)
    first = int(np.searchsorted(ot, start_ms, "left"))
    stop = int(np.searchsorted(ot, end_ms, "left"))
    if stop - first < 2:
        known = (
            f"{pd.Timestamp(int(ot[0]), unit='ms')} to {pd.Timestamp(int(ot[-1]), unit='ms')}"
            if len(ot)
            else "none"
        )
        raise UsageError(f"{symbol}: fewer than 2 candles between --from and --to (data: {known})")
    lo = max(0, first - warmup_candles)
    # one more candle after the span: the venue's clock moves to its open to close the last one
    frame = candles.iloc[lo : min(len(candles), stop + 1)].reset_index(drop=True)
    features = compute_features(frame, interval)
    return MarketHistory(symbol, interval, frame, features, first - lo, stop - lo, funding)
