"""The candle store: one Parquet file per market, symbol, interval and UTC month.

Layout (``root`` is usually ``<home>/candles``)::

    <root>/<market>/<SYMBOL>/<interval>/<SYMBOL>-<interval>-<YYYY-MM>.parquet

Each file holds exactly the columns and dtypes of
:data:`xylen.data.schema.CANDLE_DTYPES`, sorted by ``open_time``, no pandas index and
no pandas metadata.  Files are written deterministically (same candles, same
compression -> same bytes) and atomically: the new content goes to a temporary file
``.tmp-<name>.<pid>.<random>`` in the same folder, is fsynced, then renamed over the
target with ``os.replace``; the folder is fsynced too.  A reader therefore sees the old
or the new file, never a torn one.  Names starting with ``.tmp-`` are never read as
data, and a writer removes temporary files left behind by dead processes.

Merging: candles already stored with the same open time and identical values are a
no-op; different values raise :class:`~xylen.errors.DataError` unless
``overwrite=True`` (then the new values win).  A month whose merged content equals
what is on disk is not rewritten at all.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from xylen.data.schema import (
    CANDLE_COLUMNS,
    CANDLE_DTYPES,
    MARKETS,
    empty_candles,
    interval_ms,
    normalize_candles,
)
from xylen.errors import DataError, UsageError
from xylen.fileio import atomic_write, remove_stale_temp_files

logger = logging.getLogger(__name__)

COMPRESSIONS: Final[tuple[str, ...]] = ("gzip", "zstd")
# pyarrow's default gzip level (9) is ~10x slower than 6 for the same size on candle data.
_LEVELS: Final[dict[str, int]] = {"gzip": 6, "zstd": 3}
_SYMBOL_RE: Final = re.compile(r"^[A-Z0-9_]{2,40}$")
_MONTH_FILE_RE: Final = re.compile(
    r"^(?P<symbol>[A-Z0-9_]+)-(?P<interval>[0-9]+[smhdw])-(?P<month>[0-9]{4}-[0-9]{2})\.parquet$"
)
_SCHEMA: Final = pa.schema(
    [
        pa.field(name, pa.int64() if dtype == "int64" else pa.float64())
        for name, dtype in CANDLE_DTYPES.items()
    ]
)


@dataclass(frozen=True)
class StoredSeries:
    """What the store holds for one market/symbol/interval."""

    market: str
    symbol: str
    interval: str
    months: tuple[str, ...]
    rows: int

    def __str__(self) -> str:
        span = f"{self.months[0]}..{self.months[-1]}" if self.months else "-"
        return (
            f"{self.market:<4} {self.symbol:<12} {self.interval:<4} {span:<17} "
            f"{len(self.months):>3} month(s) {self.rows:>9} rows"
        )


@dataclass(frozen=True)
class WriteResult:
    """Outcome of :meth:`CandleStore.write`: rows that were new or changed, files rewritten."""

    rows_added: int
    rows_changed: int
    files_written: tuple[Path, ...]
    files_unchanged: tuple[Path, ...]


def validate_series(market: str, symbol: str, interval: str) -> None:
    """Raise ``UsageError`` for an unknown market, a malformed symbol or an unknown interval."""
    if market not in MARKETS:
        raise UsageError(f"unknown market {market!r} (expected one of {', '.join(MARKETS)})")
    if not _SYMBOL_RE.match(symbol):
        raise UsageError(f"bad symbol {symbol!r} (expected upper-case letters/digits, e.g. BTCUSDT)")
    try:
        interval_ms(interval)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def month_of(open_time_ms: npt.NDArray[np.int64]) -> npt.NDArray[np.str_]:
    """The UTC month (``YYYY-MM`` strings) of each open time in milliseconds."""
    return np.datetime_as_string(open_time_ms.astype("datetime64[ms]").astype("datetime64[M]"), unit="M")


def _month_bounds(month: str) -> tuple[int, int]:
    start = np.datetime64(month, "M")
    return int(start.astype("datetime64[ms]").astype("int64")), int(
        (start + 1).astype("datetime64[ms]").astype("int64")
    )


def _frames_equal(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    if len(a) != len(b):
        return False
    for col in CANDLE_COLUMNS:
        x, y = a[col].to_numpy(), b[col].to_numpy()
        if x.dtype.kind == "f":
            if not np.array_equal(x, y, equal_nan=True):
                return False
        elif not np.array_equal(x, y):
            return False
    return True


class CandleStore:
    """Parquet candle files under ``root`` (see the module docstring for layout and guarantees)."""

    def __init__(self, root: str | os.PathLike[str], compression: str = "gzip") -> None:
        if compression not in COMPRESSIONS:
            choices = ", ".join(COMPRESSIONS)
            raise UsageError(f"unknown compression {compression!r} (expected one of {choices})")
        self.root = Path(root)
        self.compression = compression

    def __repr__(self) -> str:
        return f"CandleStore({str(self.root)!r}, compression={self.compression!r})"

    # -- paths -------------------------------------------------------------------------------------
    def series_dir(self, market: str, symbol: str, interval: str) -> Path:
        return self.root / market / symbol / interval

    def month_path(self, market: str, symbol: str, interval: str, month: str) -> Path:
        """``<root>/<market>/<SYMBOL>/<interval>/<SYMBOL>-<interval>-<YYYY-MM>.parquet``."""
        return self.series_dir(market, symbol, interval) / f"{symbol}-{interval}-{month}.parquet"

    def months(self, market: str, symbol: str, interval: str) -> list[str]:
        """Sorted ``YYYY-MM`` months stored for a series (temporary files ignored)."""
        folder = self.series_dir(market, symbol, interval)
        if not folder.is_dir():
            return []
        found = []
        for entry in folder.iterdir():
            match = _MONTH_FILE_RE.match(entry.name)
            if match and match.group("symbol") == symbol and match.group("interval") == interval:
                found.append(match.group("month"))
        return sorted(found)

    # -- reading -----------------------------------------------------------------------------------
    def _read_file(self, path: Path) -> pd.DataFrame:
        try:
            table = pq.read_table(path, columns=list(CANDLE_COLUMNS))
        except (OSError, pa.ArrowException, ValueError) as exc:
            raise DataError(f"{path}: unreadable candle file: {exc}") from exc
        if table.schema.remove_metadata() != _SCHEMA:
            raise DataError(f"{path}: unexpected columns/types {table.schema.names}")
        frame: pd.DataFrame = pd.DataFrame(
            {
                name: table.column(name).to_numpy().astype(dtype, copy=False)
                for name, dtype in CANDLE_DTYPES.items()
            }
        )
        return frame

    def read(
        self,
        market: str,
        symbol: str,
        interval: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> pd.DataFrame:
        """Candles with ``start_ms <= open_time < end_ms`` (either bound optional), sorted.

        Returns an empty candle frame when nothing is stored.
        """
        validate_series(market, symbol, interval)
        frames = []
        for month in self.months(market, symbol, interval):
            lo, hi = _month_bounds(month)
            if (start_ms is not None and hi <= start_ms) or (end_ms is not None and lo >= end_ms):
                continue
            frames.append(self._read_file(self.month_path(market, symbol, interval, month)))
        if not frames:
            return empty_candles()
        frame = pd.concat(frames, ignore_index=True)
        mask = np.ones(len(frame), dtype=bool)
        if start_ms is not None:
            mask &= frame["open_time"].to_numpy() >= start_ms
        if end_ms is not None:
            mask &= frame["open_time"].to_numpy() < end_ms
        try:
            return normalize_candles(frame[mask])
        except ValueError as exc:
            raise DataError(f"{self.series_dir(market, symbol, interval)}: {exc}") from exc

    def list(self) -> list[StoredSeries]:
        """Every stored series, sorted by market, symbol and interval (temporary files ignored)."""
        out: list[StoredSeries] = []
        if not self.root.is_dir():
            return out
        for market_dir in _subdirs(self.root):
            if market_dir.name not in MARKETS:
                continue
            for symbol_dir in _subdirs(market_dir):
                for interval_dir in _subdirs(symbol_dir):
                    market, symbol, interval = market_dir.name, symbol_dir.name, interval_dir.name
                    months = self.months(market, symbol, interval)
                    if not months:
                        continue
                    rows = 0
                    for month in months:
                        path = self.month_path(market, symbol, interval, month)
                        try:
                            rows += pq.ParquetFile(path).metadata.num_rows
                        except (OSError, pa.ArrowException) as exc:
                            raise DataError(f"{path}: unreadable candle file: {exc}") from exc
                    out.append(StoredSeries(market, symbol, interval, tuple(months), rows))
        return out

    # -- writing -----------------------------------------------------------------------------------
    def write(
        self,
        market: str,
        symbol: str,
        interval: str,
        frame: pd.DataFrame,
        overwrite: bool = False,
    ) -> WriteResult:
        """Merge ``frame`` into the month files of a series (see module docstring).

        ``frame`` may hold any number of months; it is normalized first (a missing
        ``close_time`` is derived from ``interval``).  Conflicts are checked for every
        month before any file is written, so a refused write changes nothing.
        """
        validate_series(market, symbol, interval)
        try:
            new = normalize_candles(frame, interval)
        except ValueError as exc:
            raise DataError(f"{market}/{symbol}/{interval}: {exc}") from exc
        if new.empty:
            return WriteResult(0, 0, (), ())
        folder = self.series_dir(market, symbol, interval)
        months = month_of(new["open_time"].to_numpy())
        plans: list[tuple[Path, pd.DataFrame | None]] = []
        added = changed = 0
        for month in sorted(set(months.tolist())):
            part = new[months == month].reset_index(drop=True)
            path = self.month_path(market, symbol, interval, month)
            merged, n_added, n_changed = self._merge(path, part, overwrite)
            added += n_added
            changed += n_changed
            plans.append((path, merged))
        folder.mkdir(parents=True, exist_ok=True)
        self.clean_temp_files(folder)
        written, unchanged = [], []
        for path, merged in plans:
            if merged is None:
                unchanged.append(path)
                continue
            self._write_atomic(path, merged)
            written.append(path)
        logger.debug(
            "%s/%s/%s: %d added, %d changed, %d file(s) written",
            market,
            symbol,
            interval,
            added,
            changed,
            len(written),
        )
        return WriteResult(added, changed, tuple(written), tuple(unchanged))

    def _merge(self, path: Path, part: pd.DataFrame, overwrite: bool) -> tuple[pd.DataFrame | None, int, int]:
        """The merged month content (None when the file would not change), rows added, rows changed."""
        if not path.exists():
            return part, len(part), 0
        old = self._read_file(path)
        both = old.merge(part, on="open_time", how="inner", suffixes=("_old", "_new"))
        differs = np.zeros(len(both), dtype=bool)
        for col in CANDLE_COLUMNS[1:]:
            x, y = both[f"{col}_old"].to_numpy(), both[f"{col}_new"].to_numpy()
            same = (x == y) | (np.isnan(x) & np.isnan(y)) if x.dtype.kind == "f" else x == y
            differs |= ~same
        n_changed = int(differs.sum())
        if n_changed and not overwrite:
            first = int(both.loc[differs, "open_time"].iloc[0])
            stamp = pd.Timestamp(first, unit="ms", tz="UTC")
            raise DataError(
                f"{path.name}: {n_changed} candle(s) already stored with different values "
                f"(first at {stamp:%Y-%m-%d %H:%M} UTC); use overwrite to replace them"
            )
        is_new = ~part["open_time"].isin(old["open_time"]).to_numpy()
        n_added = int(is_new.sum())
        if n_added == 0 and n_changed == 0:
            return None, 0, 0
        kept_old = old[~old["open_time"].isin(part["open_time"])]
        merged = normalize_candles(pd.concat([kept_old, part], ignore_index=True))
        if _frames_equal(merged, old):
            return None, 0, 0
        return merged, n_added, n_changed

    def _write_atomic(self, path: Path, frame: pd.DataFrame) -> None:
        arrays = [
            pa.array(frame[name].to_numpy(dtype=dtype), type=_SCHEMA.field(name).type)
            for name, dtype in CANDLE_DTYPES.items()
        ]
        # No pandas index, no pandas/arrow schema metadata, no timestamps: same candles -> same bytes.
        table = pa.Table.from_arrays(arrays, schema=_SCHEMA)
        atomic_write(
            path,
            lambda handle: pq.write_table(
                table,
                handle,
                compression=self.compression,
                compression_level=_LEVELS[self.compression],
                use_dictionary=False,
                write_statistics=True,
                store_schema=False,
            ),
        )

    def clean_temp_files(self, folder: Path) -> int:
        """Remove temporary files in ``folder`` left by processes that no longer run."""
        return remove_stale_temp_files(folder)


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
