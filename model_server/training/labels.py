"""Training labels: direction of the forward return beyond the round-trip cost, with a hold band.

Definition (row ``t`` = the candle that opened at ``open_time[t]``; its features use rows ``<= t``):

* forward return ``r[t] = close[t + h] / close[t] - 1`` over ``h`` bars (default 12 bars of 5m = one
  hour).  It uses the closes ``t .. t + h`` only: entry at the close of bar ``t`` (when its features
  are known), exit ``h`` bars later.
* ``cost`` is the taker round trip of :class:`xylen.config.schema.TradingConfig`:
  ``2 * (taker_fee_bps + slippage_bps) / 10_000`` (12 bps with the defaults 5 + 1 bps a side).
* label ``1`` (up) when ``r > +cost``, ``0`` (down) when ``r < -cost``; rows inside the band
  ``[-cost, +cost]`` are *hold* rows (NaN): a move that does not pay the round trip is noise to a
  directional model, so they are dropped from training and from the validation metrics.  The
  metrics therefore describe "given a move worth trading, which way", the question the server's
  LONG/SHORT threshold answers.
* rows whose ``t + h`` falls beyond the data, or whose ``h`` bars are not contiguous in time (a gap
  in the candles), have no label (NaN).
"""

from __future__ import annotations

import logging
from typing import Final

import numpy as np
import numpy.typing as npt

from xylen.config.schema import TradingConfig

logger = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
UP: Final = 1.0
DOWN: Final = 0.0


def round_trip_cost(trading: TradingConfig | None = None) -> float:
    """Taker round-trip cost as a fraction: fees and slippage on entry and exit."""
    cfg = trading or TradingConfig()
    return 2.0 * (cfg.taker_fee_bps + cfg.slippage_bps) / 10_000.0


def forward_return(
    close: npt.ArrayLike,
    horizon_bars: int,
    open_time: npt.ArrayLike | None = None,
    step_ms: int | None = None,
) -> F64:
    """``close[t + h] / close[t] - 1``; NaN where ``t + h`` is missing or the window has a gap.

    With ``open_time`` and ``step_ms`` given, a row is valid only when
    ``open_time[t + h] - open_time[t] == h * step_ms`` (no missing candle inside the horizon).
    """
    if horizon_bars < 1:
        raise ValueError(f"horizon_bars must be >= 1, got {horizon_bars}")
    c = np.asarray(close, dtype=np.float64)
    out = np.full(len(c), np.nan, dtype=np.float64)
    if len(c) <= horizon_bars:
        return out
    with np.errstate(divide="ignore", invalid="ignore"):
        out[:-horizon_bars] = c[horizon_bars:] / c[:-horizon_bars] - 1.0
    if open_time is not None and step_ms is not None:
        ot = np.asarray(open_time, dtype=np.int64)
        gap = (ot[horizon_bars:] - ot[:-horizon_bars]) != horizon_bars * step_ms
        out[:-horizon_bars][gap] = np.nan
    out[~np.isfinite(out)] = np.nan
    return out


def direction_labels(returns: npt.ArrayLike, cost: float) -> F64:
    """1.0 when ``r > cost``, 0.0 when ``r < -cost``, NaN inside the hold band or unknown."""
    if cost < 0:
        raise ValueError(f"cost must be >= 0, got {cost}")
    r = np.asarray(returns, dtype=np.float64)
    out = np.full(len(r), np.nan, dtype=np.float64)
    out[r > cost] = UP
    out[r < -cost] = DOWN
    return out


def make_labels(
    close: npt.ArrayLike,
    horizon_bars: int,
    cost: float,
    open_time: npt.ArrayLike | None = None,
    step_ms: int | None = None,
) -> tuple[F64, F64]:
    """``(labels, forward_returns)`` for every row (see the module docstring)."""
    fwd = forward_return(close, horizon_bars, open_time, step_ms)
    return direction_labels(fwd, cost), fwd
