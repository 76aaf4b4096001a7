"""The newest feature row from the tail of a candle series (the coordinator's hot path).

:func:`latest_row_array` runs the batch kernel (:func:`xylen.features.compute.feature_block`)
on the last ``history`` candles with ``start = n - 1``: TA-Lib runs over the window (its
smoothing state needs it), the numpy work touches one row.  No pandas on the array path.

Why ``DEFAULT_HISTORY = 4000`` (5m candles, ~13.9 days): the slowest-forgetting state is
the Wilder smoothing (factor 13/14 per bar) of RSI(14) and ATR(14) on 1h candles.  4000
5m candles hold >= 332 complete hours; after TA-Lib's 14-bar seed that leaves ~318 hourly
updates, so the seed's influence is (13/14)**318 ~ 6e-11.  EMA(200) on 5m forgets with
(199/201)**3800 ~ 3e-17, ADX(14) (double Wilder) with ~(13/14)**3970.  So the newest row
agrees with the batch computation over the full history to float32 rounding (test: 1e-6
relative), at ~1 ms per call.  Shorter windows are accepted (at least
:func:`xylen.features.spec.max_warmup` rows give finite values) but drift from the batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

import numpy as np
import numpy.typing as npt

from xylen.errors import UsageError
from xylen.features.compute import as_arrays, feature_block
from xylen.features.spec import feature_specs

if TYPE_CHECKING:  # a frame is accepted, but the array path never loads pandas
    import pandas as pd

DEFAULT_HISTORY: Final = 4000

F32 = npt.NDArray[np.float32]


def latest_row_array(
    candles_tail: pd.DataFrame | Mapping[str, npt.ArrayLike],
    interval: str = "5m",
    history: int = DEFAULT_HISTORY,
) -> F32:
    """Feature vector (float32, spec order) of the newest candle, from its last ``history`` candles."""
    if history < 1:
        raise UsageError(f"history must be >= 1, got {history}")
    if hasattr(candles_tail, "iloc"):  # a pandas DataFrame: keep its last rows
        candles_tail = candles_tail.iloc[-history:]
        arr = as_arrays(candles_tail)
    else:
        arr = as_arrays({k: np.asarray(candles_tail[k])[-history:] for k in candles_tail})
    n = len(arr["open_time"])
    if n == 0:
        raise UsageError("no candles given")
    return feature_block(arr, interval, start=n - 1)[:, 0]


def latest_row(
    candles_tail: pd.DataFrame | Mapping[str, npt.ArrayLike],
    interval: str = "5m",
    history: int = DEFAULT_HISTORY,
) -> dict[str, float]:
    """The newest feature row as ``{name: value}`` (plus ``open_time``)."""
    values = latest_row_array(candles_tail, interval, history)
    row: dict[str, float] = {"open_time": float(np.asarray(candles_tail["open_time"])[-1])}
    row.update(zip((s.name for s in feature_specs(interval)), values.tolist(), strict=True))
    return row
