"""Parsing of binance.vision kline archives (CSV and zip) into candle frames.

Binance publishes klines as one CSV per zip with 12 columns (:data:`KLINE_COLUMNS`).
Two layouts exist: USD-M / COIN-M archives start with a header row, spot archives do
not.  Spot archives from 2025 on carry open and close times in microseconds
(16 digits) instead of milliseconds; :func:`parse_kline_csv` detects such values per
row and converts them to milliseconds.  The result is always a frame as defined by
:func:`xylen.data.schema.normalize_candles` (``count`` becomes ``trades``, ``ignore``
is dropped).  Any malformed input raises :class:`~xylen.errors.DataError` naming the
file and the problem.
"""

from __future__ import annotations

import io
import logging
import re
import zipfile
import zlib
from collections.abc import Hashable
from pathlib import Path
from typing import Final, NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd

from xylen.data.schema import CANDLE_COLUMNS, interval_ms, normalize_candles
from xylen.errors import DataError

logger = logging.getLogger(__name__)

KLINE_COLUMNS: Final[tuple[str, ...]] = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "count",
    "taker_buy_volume",
    "taker_buy_quote_volume",
    "ignore",
)
#: Open/close times at or above this value are microseconds (16 digits), not milliseconds.
MICROSECOND_THRESHOLD: Final[int] = 10**15

_FILENAME_RE: Final = re.compile(
    r"^(?P<symbol>[A-Z0-9_]+)-(?P<interval>[0-9]+[smhdw])-(?P<period>[0-9]{4}-[0-9]{2}(?:-[0-9]{2})?)"
    r"\.(?P<ext>zip|csv)$"
)
_DTYPES: Final[dict[Hashable, str]] = {
    # Nullable integers so that a short row is reported as such instead of as a type error.
    name: ("Int64" if name in ("open_time", "close_time") else "float64")
    for name in KLINE_COLUMNS
}


class KlineFileName(NamedTuple):
    """The parts of a binance.vision kline file name such as ``BTCUSDT-5m-2024-01.zip``."""

    symbol: str
    interval: str
    period: str  # "YYYY-MM" for a monthly archive, "YYYY-MM-DD" for a daily one

    @property
    def is_monthly(self) -> bool:
        return len(self.period) == 7


def parse_kline_filename(name: str | Path) -> KlineFileName:
    """Split ``BTCUSDT-1m-2022-09-05.csv`` (or ``.zip``) into symbol, interval and period.

    Only the final path component is looked at.  Raises ``DataError`` when the name
    does not follow the binance.vision kline naming or the interval is unknown.
    """
    base = Path(name).name
    match = _FILENAME_RE.match(base)
    if match is None:
        raise DataError(
            f"{base}: not a binance.vision kline file name (expected e.g. BTCUSDT-5m-2024-01.zip)"
        )
    interval = match.group("interval")
    try:
        interval_ms(interval)
    except ValueError as exc:
        raise DataError(f"{base}: {exc}") from exc
    return KlineFileName(match.group("symbol"), interval, match.group("period"))


def _has_header(data: bytes) -> bool:
    first = data.lstrip()[:64]
    return bool(first) and not (first[:1].isdigit() or first[:1] == b"-")


def to_milliseconds(values: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Convert epoch times to milliseconds: values with 16+ digits are microseconds."""
    times = values.astype("int64", copy=False)
    return np.where(times >= MICROSECOND_THRESHOLD, times // 1000, times)


def parse_kline_csv(data: bytes, name: str = "<bytes>", interval: str | None = None) -> pd.DataFrame:
    """Parse the bytes of one kline CSV (with or without header row) into a candle frame.

    ``name`` is only used in error messages.  ``interval`` is not needed for parsing
    (close times are in the file); when given it is checked to be a valid interval.
    """
    if interval is not None:
        try:
            interval_ms(interval)
        except ValueError as exc:
            raise DataError(f"{name}: {exc}") from exc
    if not data.strip():
        raise DataError(f"{name}: empty kline file")
    header = _has_header(data)
    if header:
        first_line = data.lstrip().split(b"\n", 1)[0].decode("utf-8", "replace").strip()
        columns = [c.strip() for c in first_line.split(",")]
        if columns[: len(KLINE_COLUMNS) - 1] != list(KLINE_COLUMNS[:-1]):
            raise DataError(f"{name}: unexpected header {first_line[:200]!r}")
    try:
        raw = pd.read_csv(
            io.BytesIO(data),
            header=None,
            names=list(KLINE_COLUMNS),
            skiprows=1 if header else 0,
            dtype=_DTYPES,
            engine="c",
        )
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{name}: malformed kline CSV: {str(exc).splitlines()[0]}") from exc
    if raw.empty:
        raise DataError(f"{name}: kline file has a header but no rows")
    required = [c for c in KLINE_COLUMNS if c not in ("ignore",)]
    bad = raw[required].isna().any(axis=1).to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0]) + (2 if header else 1)
        raise DataError(f"{name}: line {row} has missing fields (expected {len(KLINE_COLUMNS)} columns)")
    raw["open_time"] = to_milliseconds(raw["open_time"].to_numpy(dtype="int64"))
    raw["close_time"] = to_milliseconds(raw["close_time"].to_numpy(dtype="int64"))
    frame = raw.rename(columns={"count": "trades"})[list(CANDLE_COLUMNS)]
    try:
        return normalize_candles(frame)
    except ValueError as exc:
        raise DataError(f"{name}: {exc}") from exc


def read_kline_zip(source: Path | bytes, name: str | None = None) -> pd.DataFrame:
    """Parse a kline zip (a path or its bytes) holding exactly one CSV.

    A corrupted archive (bad zip structure, CRC mismatch) or one with zero or several
    CSV members raises ``DataError``.
    """
    label = name or (source.name if isinstance(source, Path) else "<zip bytes>")
    try:
        with zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            csvs = [m for m in members if m.filename.lower().endswith(".csv")]
            if len(csvs) != 1 or len(members) != 1:
                names = ", ".join(m.filename for m in members) or "nothing"
                raise DataError(f"{label}: expected exactly one CSV in the zip, found {names}")
            data = archive.read(csvs[0])
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
        raise DataError(f"{label}: corrupted zip archive: {exc}") from exc
    return parse_kline_csv(data, name=f"{label}:{csvs[0].filename}")


def read_kline_file(path: str | Path) -> pd.DataFrame:
    """Parse a binance.vision kline ``.zip`` or ``.csv`` file from disk."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".zip":
        return read_kline_zip(path)
    if suffix == ".csv":
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DataError(f"{path.name}: cannot read: {exc}") from exc
        return parse_kline_csv(data, name=path.name)
    raise DataError(f"{path.name}: not a kline file (expected .zip or .csv)")
