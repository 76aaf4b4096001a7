"""The candle schema shared by every reader and writer of candles.

A candle frame is a ``pandas.DataFrame`` with exactly :data:`CANDLE_COLUMNS`, in that
order, sorted by ``open_time`` with no duplicates.  Times are int64 milliseconds UTC
(open time, and close time = open time + interval - 1 ms for a complete candle).
Prices and volumes are float64: the exchange's decimal strings (0.1 or 0.01 ticks on
five-digit prices) do not survive float32, and the 5m -> 15m/1h aggregation checks
need exact values.  Columns a source does not have (freqtrade keeps only OHLCV) are
NaN, never invented.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Final

import numpy as np
import numpy.typing as npt

from xylen.errors import DataError, UsageError

if TYPE_CHECKING:  # imported where a frame is built: interval arithmetic alone never loads pandas
    import pandas as pd

CANDLE_DTYPES: Final[dict[str, str]] = {
    "open_time": "int64",
    "open": "float64",
    "high": "float64",
    "low": "float64",
    "close": "float64",
    "volume": "float64",
    "close_time": "int64",
    "quote_volume": "float64",
    "trades": "float64",
    "taker_buy_volume": "float64",
    "taker_buy_quote_volume": "float64",
}
CANDLE_COLUMNS: Final[tuple[str, ...]] = tuple(CANDLE_DTYPES)
OHLCV: Final[tuple[str, ...]] = ("open", "high", "low", "close", "volume")
MARKETS: Final[tuple[str, ...]] = ("um", "spot", "cm")

_UNIT_MS: Final[dict[str, int]] = {
    "s": 1_000,
    "m": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
    "w": 604_800_000,
}
_INTERVAL_RE: Final = re.compile(r"^([1-9][0-9]*)([smhdw])$")


@functools.lru_cache(maxsize=128)
def interval_ms(interval: str) -> int:
    """Length of a Binance interval string (``"5m"``, ``"1h"``, ``"1d"``) in milliseconds.

    Raises ``ValueError`` for anything else (months, ``"0m"``, ``"5M"``).  Cached: the heartbeat
    and the backtest ask for it on every candle.
    """
    match = _INTERVAL_RE.match(interval)
    if match is None:
        raise ValueError(f"unknown interval {interval!r} (expected e.g. 1m, 5m, 15m, 1h, 4h, 1d)")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def interval_name(step_ms: int) -> str:
    """``300000`` -> ``"5m"``; the largest unit that divides the step."""
    for unit, size in sorted(_UNIT_MS.items(), key=lambda kv: -kv[1]):
        if step_ms > 0 and step_ms % size == 0:
            return f"{step_ms // size}{unit}"
    raise DataError(f"cannot name a candle interval of {step_ms} ms")


def infer_interval(open_time: npt.NDArray[np.int64]) -> str:
    """The most common spacing of the open times (a few gaps do not change it), as an interval
    string."""
    if len(open_time) < 2:
        raise UsageError("cannot infer the interval from fewer than 2 candles; pass --interval")
    steps, counts = np.unique(np.diff(open_time), return_counts=True)
    return interval_name(int(steps[np.argmax(counts)]))


def empty_candles() -> pd.DataFrame:
    """A candle frame with no rows and the right dtypes."""
    import pandas as pd

    return pd.DataFrame({c: np.array([], dtype=t) for c, t in CANDLE_DTYPES.items()})


def normalize_candles(frame: pd.DataFrame, interval: str | None = None) -> pd.DataFrame:
    """Return ``frame`` with exactly the candle columns and dtypes, sorted, index reset.

    Missing optional columns become NaN; a missing ``close_time`` is derived from
    ``interval`` (required then).  Duplicated open times raise ``ValueError``: two
    different candles for one open time is a data error, not something to pick from.
    """
    import pandas as pd

    out = pd.DataFrame(index=frame.index)
    for col, dtype in CANDLE_DTYPES.items():
        if col in frame.columns:
            out[col] = frame[col].to_numpy(dtype=dtype)
        elif col == "close_time":
            if interval is None:
                raise ValueError("close_time missing and no interval given to derive it")
            out[col] = frame["open_time"].to_numpy(dtype="int64") + interval_ms(interval) - 1
        elif col in ("open_time",) or col in OHLCV:
            raise ValueError(f"candle column {col!r} missing")
        else:
            out[col] = np.nan
    out = out.sort_values("open_time", kind="stable").reset_index(drop=True)
    if out["open_time"].duplicated().any():
        dup = int(out.loc[out["open_time"].duplicated(), "open_time"].iloc[0])
        raise ValueError(f"duplicate candle open_time {dup}")
    return out
