"""Reading candles from a file or the candle store: one reader for the CLI and training.

Input forms: ``.parquet``, ``.feather``, ``.csv`` (binance.vision kline CSV or a table with
``open_time``/``date`` and OHLCV columns), a binance.vision ``.zip``, or
``store:MARKET/SYMBOL/INTERVAL`` read from the candle store under the home folder.  Every form
comes back with integer ``open_time`` (ms UTC) and OHLCV columns, sorted by open time.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from xylen.errors import DataError, UsageError
from xylen.paths import Home


def standardise(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    if "open_time" not in frame.columns:
        if "date" not in frame.columns:
            raise DataError(f"{source}: no open_time or date column")
        dates = pd.to_datetime(frame["date"], utc=True)
        frame = frame.assign(open_time=dates.dt.as_unit("ms").astype("int64"))
    elif not pd.api.types.is_integer_dtype(frame["open_time"]):
        dates = pd.to_datetime(frame["open_time"], utc=True)
        frame = frame.assign(open_time=dates.dt.as_unit("ms").astype("int64"))
    missing = [c for c in ("open", "high", "low", "close", "volume") if c not in frame.columns]
    if missing:
        raise DataError(f"{source}: missing columns {missing}")
    return frame.sort_values("open_time", kind="stable").reset_index(drop=True)


def read_input(spec: str, home: str | None) -> pd.DataFrame:
    """Candles from a file or a ``store:`` selection."""
    if spec.startswith("store:"):
        parts = spec[len("store:") :].strip("/").split("/")
        if len(parts) != 3:
            raise UsageError(f"bad store selection {spec!r} (expected store:MARKET/SYMBOL/INTERVAL)")
        from xylen.data.store import CandleStore

        market, symbol, interval = parts
        frame = CandleStore(Home.resolve(home).candles).read(market, symbol, interval)
        if frame.empty:
            raise DataError(f"nothing stored for {spec}")
        return frame
    path = Path(spec)
    if not path.is_file():
        raise UsageError(f"input file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".zip":
            from xylen.data.parse import read_kline_file

            return read_kline_file(path)
        if suffix == ".csv":
            from xylen.data.parse import read_kline_file

            try:
                return read_kline_file(path)
            except DataError:
                return standardise(pd.read_csv(path), path.name)
        if suffix == ".parquet":
            return standardise(pd.read_parquet(path), path.name)
        if suffix in (".feather", ".arrow"):
            return standardise(pd.read_feather(path), path.name)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path.name}: cannot read: {exc}") from exc
    raise UsageError(f"unsupported input {path.name} (use .parquet, .feather, .csv, .zip or store:...)")
