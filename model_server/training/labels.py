"""Training labels: the label of :mod:`xylen.labels` with the round-trip cost as the no-trade band.

The definition lives in :mod:`xylen.labels` (the coordinator labels its outcomes with the same
functions); this module adds the band training uses and the array form.  Row ``t`` = the candle
that opened at ``open_time[t]``; its features use rows ``<= t``:

* forward return ``r[t] = close[t + h] / close[t] - 1`` over ``h`` bars (default 12 bars of 5m = one
  hour).  It uses the closes ``t .. t + h`` only: entry at the close of bar ``t`` (when its features
  are known), exit ``h`` bars later.
* ``cost`` is the taker round trip of :class:`xylen.config.schema.TradingConfig`:
  ``2 * (taker_fee_bps + slippage_bps) / 10_000`` (12 bps with the defaults 5 + 1 bps a side).
* label ``1`` (up) when ``r > 0``, ``0`` (down) otherwise; rows inside the no-trade band
  ``|r| <= cost`` are *hold* rows (NaN): a move that does not pay the round trip is noise to a
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
from xylen.labels import direction_labels, forward_return

logger = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
UP: Final = 1.0
DOWN: Final = 0.0
__all__ = ["DOWN", "UP", "direction_labels", "forward_return", "make_labels", "round_trip_cost"]


def round_trip_cost(trading: TradingConfig | None = None) -> float:
    """Taker round-trip cost as a fraction: fees and slippage on entry and exit."""
    cfg = trading or TradingConfig()
    return 2.0 * (cfg.taker_fee_bps + cfg.slippage_bps) / 10_000.0


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
