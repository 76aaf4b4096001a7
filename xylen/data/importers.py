"""Import of local candle files into the store: binance.vision kline files and freqtrade data.

Supported files:

* binance.vision kline archives and CSVs (``BTCUSDT-5m-2024-01.zip``,
  ``BTCUSDT-1m-2022-09-05.csv``): symbol and interval come from the file name,
  the market is ``um`` unless given (the file itself does not say which market it is).
* freqtrade feather files (``BTC_USDT_USDT-5m-futures.feather``, ``BTC_USDT-5m.feather``)
  with columns ``date`` (tz-aware), ``open``, ``high``, ``low``, ``close``, ``volume``.
* freqtrade JSON files (``BTC_USDT_USDT-5m-futures.json``, ``BTC_USDT-5m.json``): a list
  of ``[open time ms, open, high, low, close, volume]`` rows.

freqtrade names map to the store as: ``BASE_QUOTE_SETTLE-<tf>-futures`` -> market ``um``
(settle == quote, e.g. USDT) or ``cm`` (settle == base), symbol ``BASEQUOTE``; no suffix
(``BASE_QUOTE-<tf>``) -> market ``spot``.  freqtrade's mark-price (``-mark``) and
funding-rate (``-funding_rate``) files are not candles of the traded contract and are
refused with a ``DataError``; there is no store kind for them yet.  Columns freqtrade
does not keep (quote volume, trades, taker volumes) are stored as NaN; ``close_time``
is derived as open time + interval - 1 ms.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd

from xylen.data.parse import parse_kline_filename, read_kline_file
from xylen.data.quality import QualityReport, check_candles, log_report
from xylen.data.schema import MARKETS, normalize_candles
from xylen.data.store import CandleStore, validate_series
from xylen.errors import DataError, UsageError

logger = logging.getLogger(__name__)

_FREQTRADE_RE: Final = re.compile(
    r"^(?P<pair>[A-Z0-9]+_[A-Z0-9]+(?:_[A-Z0-9]+)?)-(?P<interval>[0-9]+[smhdw])"
    r"(?:-(?P<kind>[a-z_]+))?\.(?P<ext>feather|json)$"
)
_REFUSED_KINDS: Final[dict[str, str]] = {
    "mark": "mark-price candles",
    "funding_rate": "funding rates",
    "index": "index-price candles",
    "premiumIndex": "premium-index candles",
}


@dataclass(frozen=True)
class ImportResult:
    """What :func:`import_file` stored for one file."""

    path: Path
    market: str
    symbol: str
    interval: str
    rows: int
    rows_stored: int
    report: QualityReport

    def __str__(self) -> str:
        return (
            f"{self.path.name}: {self.market} {self.symbol} {self.interval}, {self.rows} candle(s), "
            f"{self.rows_stored} new or changed, {len(self.report.issues)} quality issue(s)"
        )


class FreqtradeName(NamedTuple):
    """The parts of a freqtrade data file name."""

    market: str
    symbol: str
    interval: str
    kind: str  # "futures", "spot" (no suffix), "mark", "funding_rate", ...


def parse_freqtrade_filename(name: str | Path) -> FreqtradeName:
    """Map ``BTC_USDT_USDT-5m-futures.feather`` to (um, BTCUSDT, 5m, futures); see the module doc."""
    base = Path(name).name
    match = _FREQTRADE_RE.match(base)
    if match is None:
        raise DataError(
            f"{base}: not a freqtrade data file name (expected e.g. BTC_USDT_USDT-5m-futures.feather)"
        )
    parts = match.group("pair").split("_")
    kind = match.group("kind") or "spot"
    base_asset, quote = parts[0], parts[1]
    if kind == "spot":
        if len(parts) == 3:
            raise DataError(f"{base}: a settle currency ({parts[2]}) without the -futures suffix")
        market = "spot"
    elif len(parts) != 3:
        raise DataError(f"{base}: futures pair without settle currency (expected e.g. BTC_USDT_USDT)")
    else:
        market = "cm" if parts[2] == base_asset else "um"
    return FreqtradeName(market, base_asset + quote, match.group("interval"), kind)


def _ms_from_dates(dates: pd.Series, label: str) -> npt.NDArray[np.int64]:
    if not isinstance(dates.dtype, pd.DatetimeTZDtype):
        raise DataError(f"{label}: column 'date' is {dates.dtype}, expected a timezone-aware datetime")
    utc = dates.dt.tz_convert("UTC").dt.tz_localize(None)
    values = utc.to_numpy(dtype="datetime64[ns]").astype("int64")
    if (values % 1_000_000).any():
        raise DataError(f"{label}: candle times are not whole milliseconds")
    result: npt.NDArray[np.int64] = values // 1_000_000
    return result


def read_freqtrade_feather(path: Path) -> pd.DataFrame:
    """A freqtrade OHLCV feather file as a frame with ``open_time`` (ms) and OHLCV columns."""
    try:
        raw = pd.read_feather(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise DataError(f"{path.name}: unreadable feather file: {exc}") from exc
    missing = [c for c in ("date", "open", "high", "low", "close", "volume") if c not in raw.columns]
    if missing:
        raise DataError(f"{path.name}: missing column(s) {', '.join(missing)}")
    frame: pd.DataFrame = pd.DataFrame({"open_time": _ms_from_dates(raw["date"], path.name)})
    for col in ("open", "high", "low", "close", "volume"):
        frame[col] = raw[col].to_numpy(dtype="float64")
    return frame


def read_freqtrade_json(path: Path) -> pd.DataFrame:
    """A freqtrade JSON OHLCV file (list of ``[ms, o, h, l, c, v]``) as open_time + OHLCV columns."""
    try:
        rows = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path.name}: unreadable JSON: {exc}") from exc
    if not isinstance(rows, list) or not all(isinstance(r, list) and len(r) == 6 for r in rows):
        raise DataError(f"{path.name}: expected a list of [time ms, open, high, low, close, volume] rows")
    if not rows:
        raise DataError(f"{path.name}: no candles")
    try:
        table = np.array(rows, dtype="float64")
        times = np.array([r[0] for r in rows], dtype="int64")
    except (TypeError, ValueError, OverflowError) as exc:
        raise DataError(f"{path.name}: non-numeric value in candle rows: {exc}") from exc
    frame: pd.DataFrame = pd.DataFrame({"open_time": times})
    for idx, col in enumerate(("open", "high", "low", "close", "volume"), start=1):
        frame[col] = table[:, idx]
    return frame


def _resolve(value: str | None, default: str, flag: str, label: str, found: str | None = None) -> str:
    if value is not None and found is not None and value != found:
        logger.info("%s: %s %s given, file name says %s; using %s", label, flag, value, found, value)
    return value if value is not None else default


def import_file(
    path: str | os.PathLike[str],
    store: CandleStore,
    market: str | None = None,
    symbol: str | None = None,
    interval: str | None = None,
    overwrite: bool = False,
) -> ImportResult:
    """Import one binance.vision or freqtrade file into ``store``; returns what was stored.

    ``market``/``symbol``/``interval`` override what the file name says (binance.vision
    files default to market ``um``).  Quality issues are logged as warnings and
    reported, never repaired.  Importing the same file twice changes nothing.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if market is not None and market not in MARKETS:
        raise UsageError(f"unknown market {market!r} (expected one of {', '.join(MARKETS)})")
    if suffix in (".zip", ".csv"):
        try:
            named = parse_kline_filename(path)
            name_symbol, name_interval = named.symbol, named.interval
        except DataError:
            if symbol is None or interval is None:
                raise
            name_symbol, name_interval = symbol, interval
        frame = read_kline_file(path)
        mkt = market or "um"
        sym = _resolve(symbol, name_symbol, "--symbol", path.name, name_symbol)
        ivl = _resolve(interval, name_interval, "--interval", path.name, name_interval)
    elif suffix in (".feather", ".json"):
        ft = parse_freqtrade_filename(path)
        if ft.kind in _REFUSED_KINDS:
            raise DataError(
                f"{path.name}: freqtrade {_REFUSED_KINDS[ft.kind]} are not candles of the traded contract; "
                "importing them is not supported"
            )
        if ft.kind not in ("futures", "spot"):
            raise DataError(f"{path.name}: unknown freqtrade file kind {ft.kind!r}")
        raw = read_freqtrade_feather(path) if suffix == ".feather" else read_freqtrade_json(path)
        mkt = _resolve(market, ft.market, "--market", path.name, ft.market)
        sym = _resolve(symbol, ft.symbol, "--symbol", path.name, ft.symbol)
        ivl = _resolve(interval, ft.interval, "--interval", path.name, ft.interval)
        try:
            validate_series(mkt, sym, ivl)
            frame = normalize_candles(raw, ivl)
        except ValueError as exc:
            raise DataError(f"{path.name}: {exc}") from exc
    else:
        raise UsageError(f"{path.name}: unsupported file type (expected .zip, .csv, .feather or .json)")
    sym = sym.upper()
    validate_series(mkt, sym, ivl)
    report = check_candles(frame, ivl)
    log_report(report, f"{path.name} ({mkt} {sym} {ivl})")
    result = store.write(mkt, sym, ivl, frame, overwrite=overwrite)
    logger.info("%s: %d candle(s) into %s %s %s", path.name, len(frame), mkt, sym, ivl)
    return ImportResult(path, mkt, sym, ivl, len(frame), result.rows_added + result.rows_changed, report)
